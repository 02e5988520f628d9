"""Convert one video on one machine: a job planned, run chunk by chunk in-process, then stitched.

The single-machine path is the distributed one without Ray: the same planner, chunk worker and stitcher,
so a laptop run and a cluster run give identical frames and timestamps. The output path is untouched
until the final, validated file is moved into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from fractions import Fraction

from slomo_core.errors import InputError, OutputError
from slomo_core.interp.base import FrameInterpolator
from slomo_core.keys import refuse_same_object
from slomo_core.lease import DEFAULT_LEASE_SECONDS, JobLease
from slomo_core.manifest import write_manifest
from slomo_core.plan import (
    TIMESTAMPS_AS_IN_FILE,
    CheckedSource,
    ChunkLength,
    JobSettings,
    default_work_root,
    job_layout_for,
    plan_job,
)
from slomo_core.scratch import make_scratch_dir, sweep_stale
from slomo_core.stage_clock import StageClock
from slomo_core.storage import StorageOptions, exists, filesystem, identity, is_local, localize
from slomo_core.timestamps import TAIL_POLICY

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ConvertOptions(JobSettings):
    """JobSettings plus what only a local run decides; defaults are what a newcomer gets."""

    overwrite: bool = False
    chunk: ChunkLength = field(default_factory=ChunkLength)
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    def validate(self) -> None:
        super().validate()
        self.chunk.validate()

    def job_settings(self) -> JobSettings:
        """The part that shapes the output: what the job id hashes, as for a flow run of the same job."""
        return JobSettings(**{f.name: getattr(self, f.name) for f in fields(JobSettings)})


@dataclass(frozen=True)
class ConvertReport:
    """What happened; printed by the CLI and stored by the flows."""

    source: str
    output: str
    interpolator: str
    input_frames: int
    output_frames: int
    output_time_base: Fraction
    scene_cuts: tuple[int, ...]
    audio_mode: str
    seconds: float
    chunks: int = 1
    tail_policy: str = TAIL_POLICY
    timestamps: str = TIMESTAMPS_AS_IN_FILE  # or how the source's timestamps were repaired / that it is sparse
    chunks_resumed: int = 0  # committed by an earlier run of the same job (a work_root run resumes)
    repeats_dropped: int | None = None  # --dedup: repeats interpolated over (None: dedup off)
    repeats_held: int | None = None  # --dedup: repeats kept as they are (frozen screens, the end)
    output_timestamps: str = "exact"  # or how the container's clock rounded them (Matroska: 1 ms)
    subtitles: str = "none in the source"  # what became of subtitles and chapters

    @property
    def frames_per_second(self) -> float:
        return self.output_frames / self.seconds if self.seconds > 0 else float("inf")


def check_output_path(source: str, output: str, overwrite: bool, storage: StorageOptions | None = None) -> None:
    """Fail before any work when the output cannot be written (a remote output: only what a lookup can tell)."""
    refuse_same_object(source, output, storage)
    if os.path.splitext(output)[1].lower() not in (".mp4", ".mov", ".mkv"):
        raise OutputError(f"{output}: unsupported container (use .mp4, .mov or .mkv)")
    if not is_local(output, storage):
        if exists(output, storage) and not overwrite:
            raise OutputError(f"{output}: already exists (pass --overwrite to replace it)")
        return
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise OutputError(f"{output}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{output}: directory {parent} is not writable")
    if os.path.isdir(output):
        raise OutputError(f"{output}: is a directory")
    if os.path.exists(output) and not overwrite:
        raise OutputError(f"{output}: already exists (pass --overwrite to replace it)")


def _check_audio(source: str, cache: str, storage: StorageOptions | None) -> None:
    """--audio stretch must be able to decode the source's audio: checked on a local copy, named as the user's."""
    local = localize(source, cache, None, storage)
    try:
        from slomo_core.video.audio import check_audio_decodes  # PyAV: once a job runs

        check_audio_decodes(local)
    except InputError as exc:
        raise InputError(str(exc).replace(local, source)) from None


def check_source_first_frame(source: str, storage: StorageOptions | None = None) -> None:
    """InputError (one line) unless the source's first video frame decodes; a remote source is read from its
    head only (ranged reads), so the check takes a second or two whatever the file's size."""
    from slomo_core.video.probe import check_first_frame  # PyAV: once a job will run

    if is_local(source, storage):
        check_first_frame(source, source)
        return
    fs, path = filesystem(source, storage)
    with fs.open(path, "rb") as head:
        check_first_frame(head, source)


def convert_locally(
    source: str,
    output: str,
    interpolator: FrameInterpolator,
    options: ConvertOptions,
    progress: ProgressCallback | None = None,
    clock: StageClock | None = None,
    work_root: str | None = None,
    storage: StorageOptions | None = None,
    checked: CheckedSource | None = None,
) -> ConvertReport:
    """Convert ``source`` into ``output`` in this process; on any failure the output path is left untouched.

    Either may be a URL (``storage``: its fsspec options, e.g. an S3 endpoint). ``clock`` collects busy
    seconds per stage: plan, decode, scene, model, encode, upload, stitch. ``work_root``: where the job
    keeps its state, as a flow run does (manifest, committed chunks, DONE), so a re-run resumes and the
    flow path and this one share a job; None keeps it in a scratch folder that goes with the run (``--local``).
    ``checked``: the caller's check_convertible of this source (its preflight), so the run reads the
    source's frame index once.
    """
    clock = clock or StageClock()
    options.validate()
    check_output_path(source, output, options.overwrite, storage)
    # one HEAD, naming an unreachable store or missing credentials in one line
    source_id = checked.source_id if checked is not None else identity(source, storage)
    if checked is None:  # before any folder is made; the planner checks every frame's pts
        check_source_first_frame(source, storage)
    root = work_root or default_work_root(output)
    layout = job_layout_for(source, output, root, options.job_settings(), options.chunk, storage, source_id)
    try:
        # the job's lease where a distributed run keeps it: two runs of one conversion, local or not, never overlap
        with JobLease(layout.lease, options.lease_seconds, storage, subject=output) as lease:
            # again: a run that held the lease until now may have written it
            check_output_path(source, output, options.overwrite, storage)
            return _convert_leased(source, output, interpolator, options, lease, progress, clock, work_root, storage,
                                   checked)
    finally:
        if is_local(layout.work_uri, storage):
            for folder in (layout.work_uri, os.path.dirname(layout.work_uri)):
                try:
                    os.rmdir(folder)  # only when empty: a --local run leaves nothing beside its output
                except OSError:
                    break


def _convert_leased(source: str, output: str, interpolator: FrameInterpolator, options: ConvertOptions,
                    lease: JobLease, progress: ProgressCallback | None, clock: StageClock,
                    work_root: str | None, storage: StorageOptions | None,
                    checked: CheckedSource | None) -> ConvertReport:
    """convert_locally's work, once this run holds the job's lease."""
    from slomo_core.chunk_attempt import committed_segment, run_chunk
    from slomo_core.stitch import stitch_job

    started = time.perf_counter()
    parent = os.path.dirname(os.path.abspath(output)) if is_local(output, storage) else None
    sweep_stale(parent)  # what a killed --local run left beside its output (or in the temp dir)
    workdir = make_scratch_dir(".slomo-convert-" if parent else "slomo-convert-", parent)
    try:
        cache = os.path.join(workdir, "cache")
        if options.resolved_audio_mode() == "stretch":
            _check_audio(source, cache, storage)
        with clock.measure("plan"):
            plan = plan_job(source, output, work_root or os.path.join(workdir, "jobs"), options.job_settings(),
                            options.chunk, cache_dir=cache, options=storage, checked=checked)
            write_manifest(plan.layout.manifest, plan.chunks, plan.job)
        total, done, resumed = plan.job["output_frames"], 0, 0
        cuts: list[int] = []
        for chunk in plan.chunks:
            status = run_chunk(
                chunk, interpolator, cache_dir=cache, clock=clock, options=storage, index=plan.index,
                progress=None if progress is None else (lambda n, base=done: progress(base + n, total)),
            )
            done += status.frames
            resumed += status.skipped
            cuts += committed_segment(chunk, storage).scene_cuts
        lease.ensure_held()  # a run that lost its lease writes no output
        if progress is not None:
            progress(total, total)  # also when the last chunks were committed by an earlier run
        with clock.measure("stitch"):
            stitched = stitch_job(plan.chunks, cache_dir=cache, options=storage, index=plan.index)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = ConvertReport(
        source=source,
        output=output,
        interpolator=interpolator.name,
        input_frames=plan.job["input_frames"],
        output_frames=stitched.frames,
        output_time_base=Fraction(plan.job["output_time_base"]),
        scene_cuts=tuple(cuts),
        audio_mode=plan.job["audio_mode"],
        seconds=time.perf_counter() - started,
        chunks=len(plan.chunks),
        timestamps=plan.job["timestamps"],
        chunks_resumed=resumed,
        repeats_dropped=plan.job.get("repeats_dropped"),
        repeats_held=plan.job.get("repeats_held"),
        output_timestamps=stitched.timestamps,
        subtitles=plan.job["subtitles"],
    )
    log.info("converted %s -> %s: %d -> %d frames", source, output, report.input_frames, report.output_frames)
    return report
