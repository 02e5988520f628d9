"""CLI glue for the flows: fail fast on bad input, pick where to run, show progress, keep Prefect and Ray quiet.

Progress comes from storage, not from the flow: a thread reads the job's commit markers and the progress
records each chunk attempt rewrites as it renders, so the bar counts output frames whether the actors run
on this machine or on a remote cluster. A finished job returns from its DONE marker, and a job that asks
for no cluster runs in this process: neither imports torch, Prefect or Ray before it needs them.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from flows.interrupts import orderly_shutdown
from slomo_core.convert import check_output_path, check_source_first_frame
from slomo_core.credentials import refuse_credentials
from slomo_core.interp.base import FrameInterpolator
from slomo_core.keys import refuse_same_object
from slomo_core.lease import refuse_if_leased
from slomo_core.manifest import DoneRecord, read_manifest
from slomo_core.plan import CheckedSource, JobLayout
from slomo_core.scratch import scratch_dir
from slomo_core.settings import ConversionSettings
from slomo_core.storage import ObjectIdentity, StorageOptions, exists, identity, is_local

IN_PROCESS_NOTE = ("slomo: no cluster asked for (--workers 1, no --ray-address, local files): "
                   "running in this process; --flow runs the Prefect flow on Ray")


def preflight(source: str, output: str, overwrite: bool, storage: StorageOptions | None, audio_mode: str,
              source_id: ObjectIdentity | None = None) -> CheckedSource | None:
    """The checks that catch most mistakes, before Prefect and Ray start (seconds saved, one clear line).

    ``source_id``: the source's identity if the caller has already looked it up (one HEAD per run, not two).
    Returns what a local source's check read (probe and frame index), for a planner in this process.
    """
    from slomo_core.video.audio import check_audio_decodes  # PyAV: loaded once a job will run
    from slomo_core.video.probe import check_convertible

    source_id = source_id or identity(source, storage)
    refuse_same_object(source, output, storage)  # any filesystem, --overwrite or not
    checked = None
    if is_local(source, storage):
        info, index = check_convertible(source)  # the same decision as `slomo probe` and the planner
        checked = CheckedSource(source_id, info, index)
        if audio_mode == "stretch":
            check_audio_decodes(source)
    else:
        check_source_first_frame(source, storage)
    if is_local(output, storage):
        check_output_path(source, output, overwrite)
    return checked


class FrameProgress:
    """Polls a job's progress through storage and drives a tqdm bar of output frames (rate and ETA).

    Chunks rewrite their records every few seconds (slomo_core.progress), so the bar moves in steps: its
    rate is the average since this run's first frames (tqdm ``smoothing=0``), not a moving average of
    steps that the polls catch a second early or late, and the ETA stays smooth. On a successful exit it
    reads once more, so the bar ends at the planned total however short the job.
    """

    def __init__(self, layout: JobLayout, storage: StorageOptions | None, quiet: bool, interval: float = 1.0) -> None:
        self.layout, self.storage, self.quiet, self.interval = layout, storage, quiet, interval
        self._bar: Any = None
        self._chunks: list | None = None
        self._quiet_since: float | None = None  # last poll that saw no frame of this run yet
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slomo-progress", daemon=True)

    def __enter__(self) -> FrameProgress:
        if not self.quiet:
            self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            if exc_type is None and not self.quiet:
                self.poll()
        except Exception:  # progress is cosmetic: never let it break a run
            pass
        finally:
            if self._bar is not None:
                self._bar.close()

    def poll(self) -> None:
        """One look at storage: create the bar once the manifest exists, then move it to the frames done."""
        from tqdm import tqdm

        from slomo_core.progress import job_progress

        if self._chunks is None:
            if not exists(self.layout.manifest, self.storage):
                return
            self._chunks, _ = read_manifest(self.layout.manifest, self.storage)
        progress = job_progress(self._chunks, self.storage)
        if self._bar is None:  # what earlier runs committed is its start, not speed
            self._bar = tqdm(total=progress.total, initial=progress.done, unit="frame", desc="interpolating",
                             dynamic_ncols=True, smoothing=0)
        if progress.done == self._bar.n:
            if self._bar.n == self._bar.initial:
                self._quiet_since = time.time()
            return
        if self._bar.n == self._bar.initial and self._quiet_since is not None:
            self._bar.start_t = self._quiet_since  # the rate counts from this run's first frames, not start-up
        self._bar.update(progress.done - self._bar.n)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.poll()
        except Exception:  # progress is cosmetic: never let it break a run
            pass


def keep_prefect_home_private() -> None:
    """Prefect's local database records every flow run and its parameters: only its owner may read it."""
    from prefect.settings import get_current_settings

    home = Path(get_current_settings().home).expanduser()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if home.stat().st_uid == os.getuid():
        home.chmod(0o700)


def refuse_flow_credentials(storage: StorageOptions | None) -> None:
    """Credentials refused before Prefect stores the run's parameters."""
    refuse_credentials(storage, "Prefect's database (as this flow run's parameters; --local keeps them in this process)")


def before_flow(storage: StorageOptions | None) -> None:
    """Credentials refused before Prefect stores the run's parameters, and its local store kept private."""
    refuse_flow_credentials(storage)
    keep_prefect_home_private()


def finished_summary(layout: JobLayout, storage: StorageOptions | None, seconds: float) -> dict[str, Any]:
    """The summary of a job that finished in an earlier run, from its manifest and DONE marker alone."""
    chunks, job = read_manifest(layout.manifest, storage)
    done = DoneRecord.read(layout.done, storage)
    return {**job, "output_frames": done.frames, "output_sha256": done.sha256, "output_timestamps": done.timestamps,
            "chunks": len(chunks),
            "chunks_resumed": len(chunks), "workers": [], "seconds": round(seconds, 2)}


def runs_in_process(args: argparse.Namespace, settings: ConversionSettings, storage: StorageOptions | None) -> bool:
    """No cluster feature asked for: one worker, no Ray address or GPU reservation, no storage options, and
    source, output and job state all local. Prefect and Ray would add ~11 s of start-up to a 9 s job doing
    the same work in the same place (bench/startup.py), so the chunks run here; ``--flow`` asks for the flow."""
    if getattr(args, "flow", False) or settings.workers > 1 or settings.ray_address or settings.gpus_per_worker:
        return False
    places = (args.input, args.output, settings.work_root(args.output))
    return storage is None and all(is_local(place) for place in places)


def run_convert(args: argparse.Namespace, settings: ConversionSettings, storage: StorageOptions | None) -> dict[str, Any]:
    """``slomo convert`` without ``--local``: a finished job returns from its DONE marker (no torch, Prefect or
    Ray); otherwise the checks run, then the job runs in this process or as the flow (see runs_in_process).
    Either way its state lives under the work dir, so the two share a job and resume each other's."""
    refuse_flow_credentials(storage)
    started = time.perf_counter()
    settings = settings.with_weights_digest(storage)  # hashed once: the job id and every worker get this digest
    source_id = identity(args.input, storage)  # the run's one HEAD of the source: the layout and the checks share it
    layout = settings.layout_for(args.input, args.output, storage, source_id)
    finished = exists(layout.done, storage)
    if finished and exists(args.output, storage):
        return finished_summary(layout, storage, time.perf_counter() - started)  # no Prefect, no Ray
    refuse_if_leased(layout.lease, storage, args.output)  # another run converts it now: say so before Prefect and Ray start
    # A finished job whose output is gone is stitched again from its committed chunks: its output is its own.
    overwrite, audio_mode = args.overwrite or finished, settings.job_settings().resolved_audio_mode()
    if runs_in_process(args, settings, storage):
        # The model (torch) loads before the checks load PyAV, as with --local: torch loaded after PyAV and
        # OpenCV ran its CPU kernels slower here (their thread pools contend), by up to 3x under load.
        with scratch_dir("slomo-weights-") as cache:
            interpolator = settings.model_spec().build(cache, None)
        checked = preflight(args.input, args.output, overwrite, storage, audio_mode, source_id)
        return run_convert_in_process(args, settings, layout, interpolator, checked)
    preflight(args.input, args.output, overwrite, storage, audio_mode, source_id)
    return run_convert_flow(args, settings, storage, layout)


def run_convert_in_process(args: argparse.Namespace, settings: ConversionSettings, layout: JobLayout,
                           interpolator: FrameInterpolator, checked: CheckedSource | None) -> dict[str, Any]:
    """The job's chunks one after another in this process, with the job state a flow run would keep;
    ``checked`` (the preflight's reading of the source) spares the planner and the chunks a second one."""
    from slomo_core.convert import convert_locally

    if not args.quiet:
        print(IN_PROCESS_NOTE, file=sys.stderr)
    work_root = settings.work_root(args.output)
    with FrameProgress(layout, None, args.quiet):
        report = convert_locally(args.input, args.output, interpolator, settings.convert_options(args.overwrite),
                                 work_root=work_root, checked=checked)
    return {"output_uri": report.output, "input_frames": report.input_frames, "output_frames": report.output_frames,
            "chunks": report.chunks, "chunks_resumed": report.chunks_resumed, "workers": [], "in_process": True,
            "seconds": round(report.seconds, 2), "audio_mode": report.audio_mode, "timestamps": report.timestamps,
            "output_timestamps": report.output_timestamps, "subtitles": report.subtitles,
            "repeats_dropped": report.repeats_dropped, "repeats_held": report.repeats_held}


def run_convert_flow(args: argparse.Namespace, settings: ConversionSettings, storage: StorageOptions | None,
                     layout: JobLayout) -> dict[str, Any]:
    from flows.convert import convert_video

    keep_prefect_home_private()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    with orderly_shutdown(settings.ray_address), FrameProgress(layout, storage, args.quiet):
        return convert_video(args.input, args.output, settings=settings, storage_options=storage,
                             overwrite=args.overwrite)


def run_archive_flow(args: argparse.Namespace, settings: ConversionSettings,
                     storage: StorageOptions | None) -> list[dict[str, Any]]:
    from flows.archive import convert_archive

    before_flow(storage)
    with orderly_shutdown(settings.ray_address, start_ray=False):  # Ray only if some video needs converting
        return convert_archive(args.input_prefix, args.output_prefix, settings=settings, pattern=args.pattern,
                               suffix=args.suffix, videos_per_pool=args.videos_per_pool, storage_options=storage)
