"""Planning a job: probe the source, cut its pairs into chunks, describe them in a manifest.

A chunk owns input pairs [s, e) and decodes frames s..e (one frame of overlap), so no output frame is
duplicated or lost. Boundaries aim at the requested chunk length and snap to a nearby keyframe (a cheap
seek; encoders also put keyframes on scene cuts). The job id hashes the source identity and every
setting, so re-running the same job finds the same manifest and resumes.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from slomo_core.dedup import scan_repeats, validate_threshold
from slomo_core.errors import ConfigError, InputError
from slomo_core.keys import absolute_location, check_name, refuse_same_object
from slomo_core.manifest import ChunkSpec
from slomo_core.scene import DEFAULT_THRESHOLD
from slomo_core.storage import ObjectIdentity, StorageOptions, exists, identity, join, localize
from slomo_core.timestamps import TAIL_POLICY, OutputTimeline, RateSpec
from slomo_core.video.choices import AUDIO_MODES, EncoderSettings, resolve_subtitle_mode

if TYPE_CHECKING:  # PyAV: loaded only once a job is planned
    from slomo_core.video.probe import FrameIndex, VideoInfo

log = logging.getLogger(__name__)
TIMESTAMPS_AS_IN_FILE = "as in the file"  # the report's "timestamps" when nothing was repaired


@dataclass(frozen=True)
class JobSettings:
    """Everything that shapes the output; part of the job id."""

    spec: RateSpec
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    audio_mode: str | None = None  # None: copy in fps mode, drop in slowmo mode
    scene_threshold: float | None = DEFAULT_THRESHOLD
    batch_pairs: int = 4
    model: str = "dis"
    weights_uri: str | None = None
    weights_sha256: str | None = None
    dedup_threshold: float | None = None  # --dedup: repeats of the previous frame are interpolated over
    subtitle_mode: str | None = None  # None: copy in fps mode, stretch in slowmo mode

    def resolved_subtitle_mode(self) -> str:
        """What happens to subtitles and chapters (see side_streams.resolve_subtitle_mode)."""
        return resolve_subtitle_mode(self.subtitle_mode, self.spec.mode)

    def resolved_audio_mode(self) -> str:
        mode = self.audio_mode or ("copy" if self.spec.mode == "fps" else "drop")
        if mode not in AUDIO_MODES:
            raise ConfigError(f"audio mode must be one of {', '.join(AUDIO_MODES)}, got {mode!r}")
        if mode == "copy" and self.spec.mode == "slowmo":
            raise ConfigError("audio cannot be copied unchanged into slow motion: use --audio drop or stretch")
        if mode == "stretch" and self.spec.mode == "fps":
            raise ConfigError("--audio stretch only applies to slowmo mode (fps mode keeps the duration)")
        return mode

    def validate(self) -> None:
        self.spec.validate()
        self.encoder.validate()
        self.resolved_audio_mode()
        self.resolved_subtitle_mode()
        if self.batch_pairs < 1:
            raise ConfigError(f"batch_pairs must be >= 1, got {self.batch_pairs}")
        if self.scene_threshold is not None and not 0.0 < self.scene_threshold <= 1.0:
            raise ConfigError(f"scene threshold must be in (0, 1], got {self.scene_threshold}")
        if self.dedup_threshold is not None:
            validate_threshold(self.dedup_threshold)


@dataclass(frozen=True)
class ChunkLength:
    """Target chunk length in input frames or seconds; neither means one chunk."""

    frames: int | None = None
    seconds: float | None = None

    def validate(self) -> None:
        if self.frames is not None and self.seconds is not None:
            raise ConfigError("give a chunk length in frames or in seconds, not both")
        if self.frames is not None and self.frames < 1:
            raise ConfigError(f"chunk length must be >= 1 frame, got {self.frames}")
        if self.seconds is not None and self.seconds <= 0:
            raise ConfigError(f"chunk length must be > 0 seconds, got {self.seconds}")

    def in_pairs(self, pts: Sequence[int], time_base: Fraction) -> int | None:
        if self.frames is not None:
            return self.frames
        if self.seconds is None:
            return None
        duration = (pts[-1] - pts[0]) * time_base
        per_second = (len(pts) - 1) / duration if duration > 0 else 1
        return max(1, round(self.seconds * per_second))


class JobLayout:
    """Where a job keeps its state under its work folder (any fsspec URL)."""

    def __init__(self, work_uri: str) -> None:
        self.work_uri = work_uri
        self.manifest = join(work_uri, "manifest.parquet")
        self.done = join(work_uri, "DONE.json")
        self.lease = join(work_uri, "LEASE.json")  # which run works on the job now (see lease.py)

    @classmethod
    def for_job(cls, source_uri: str, source: ObjectIdentity, output_uri: str, work_root: str,
                settings: JobSettings, chunk_length: ChunkLength) -> JobLayout:
        """The one derivation of a job's identity: planning, progress display and "already converted?"
        checks all call this, so they always agree on the job id."""
        job_id = job_id_for(source_uri, source.etag, source.size, output_uri, settings, chunk_length)
        return cls(join(work_root, check_name(job_id, "job id")))

    @property
    def job_id(self) -> str:
        return self.work_uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def commits(self) -> str:
        return join(self.work_uri, "commits")

    @property
    def progress(self) -> str:
        return join(self.work_uri, "progress")

    def progress_record(self, chunk_index: int, attempt: str) -> str:
        return join(self.progress, check_name(f"chunk-{chunk_index:05d}-{attempt}.json", "attempt"))

    def segment(self, chunk_index: int, attempt: str) -> str:
        return join(self.work_uri, "segments", f"chunk-{chunk_index:05d}", check_name(f"{attempt}.mp4", "attempt"))

    def commit_marker(self, chunk_index: int) -> str:
        return join(self.work_uri, "commits", f"chunk-{chunk_index:05d}.json")

    def status(self, chunk_index: int, attempt: str) -> str:
        return join(self.work_uri, "status", check_name(f"chunk-{chunk_index:05d}-{attempt}.parquet", "attempt"))


def chunk_boundaries(pair_count: int, keyframes: Sequence[int], pairs_per_chunk: int | None,
                     avoid: AbstractSet[int] = frozenset()) -> list[tuple[int, int]]:
    """Pair ranges [s, e) covering 0..pair_count, about ``pairs_per_chunk`` pairs each, snapped to keyframes.

    No boundary falls on a frame in ``avoid`` (dropped repeats: a chunk needs the kept frames around them).
    """
    if pair_count < 1:
        raise ConfigError("a job needs at least one pair of frames")
    if pairs_per_chunk is None or pairs_per_chunk >= pair_count:
        return [(0, pair_count)]
    keys = sorted(k for k in keyframes if 0 < k < pair_count and k not in avoid)
    slack = pairs_per_chunk // 4
    starts = [0]
    target = pairs_per_chunk
    while target < pair_count:
        choice = target
        while choice in avoid:
            choice += 1
        lo = bisect.bisect_left(keys, target - slack)
        candidates = [k for k in keys[lo : bisect.bisect_right(keys, target + slack)] if k > starts[-1]]
        if candidates:
            choice = min(candidates, key=lambda k: (abs(k - target), k))
        if choice >= pair_count:
            break
        starts.append(choice)
        target = choice + pairs_per_chunk
    ends = starts[1:] + [pair_count]
    return list(zip(starts, ends))


def job_id_for(source_uri: str, source_etag: str, source_size: int, output_uri: str, settings: JobSettings,
               chunk_length: ChunkLength) -> str:
    """A hash of the source identity, the output and every setting (see JobLayout.for_job)."""
    source_uri, output_uri = absolute_location(source_uri), absolute_location(output_uri)
    shaping = asdict(settings)
    if shaping["dedup_threshold"] is None:  # dedup off: the id of a job planned before --dedup existed
        del shaping["dedup_threshold"]
    payload = json.dumps(
        {"source": [source_uri, source_etag, source_size], "output": output_uri,
         "settings": shaping, "chunks": asdict(chunk_length)},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CheckedSource:
    """A local source that passed ``check_convertible`` earlier in this run, with the identity it had then.

    The planner takes its probe and frame index instead of reading the file again while the identity is
    unchanged: for a B-frame AVI every index read is a decode pass of the whole file.
    """

    source_id: ObjectIdentity
    info: VideoInfo
    index: FrameIndex


@dataclass(frozen=True)
class Plan:
    chunks: list[ChunkSpec]
    job: dict
    layout: JobLayout
    index: FrameIndex | None = None  # the source's frame index, for chunks run in this process (see run_chunk)


def plan_job(
    source_uri: str,
    output_uri: str,
    work_root: str,
    settings: JobSettings,
    chunk_length: ChunkLength = ChunkLength(),
    *,
    cache_dir: str,
    options: StorageOptions | None = None,
    checked: CheckedSource | None = None,
) -> Plan:
    """Probe the source and describe every chunk; nothing is written here (see write_manifest).

    ``checked``: this run's preflight result for the source, used while the source's identity is unchanged.
    """
    # PyAV: only when a job is planned
    from slomo_core.video.encode import check_codec_fits
    from slomo_core.video.probe import check_convertible
    from slomo_core.video.side_streams import describe_side_streams

    settings.validate()
    chunk_length.validate()
    check_codec_fits(output_uri, settings.encoder.codec)
    refuse_same_object(source_uri, output_uri, options)
    source_uri, output_uri, work_root = (absolute_location(u) for u in (source_uri, output_uri, work_root))
    source_id = identity(source_uri, options)
    local = localize(source_uri, cache_dir, source_id, options)
    if checked is not None and checked.source_id == source_id:
        info, index = checked.info, checked.index
    else:
        try:
            info, index = check_convertible(local)
        except InputError as exc:  # name the user's source, not the cached copy
            raise InputError(str(exc).replace(local, source_uri)) from None
    for note in index.notes:  # one line each, once per run: the job still converts
        log.warning("%s: %s", source_uri, note)
    pts = index.pts
    full = OutputTimeline(settings.spec, pts, info.time_base)
    check_output_clock(output_uri, full, pts)
    layout = JobLayout.for_job(source_uri, source_id, output_uri, work_root, settings, chunk_length)
    job_id = layout.job_id
    # One line, before any work, when the codec cannot hold the source's depth (see output_pix_fmt).
    output_pix_fmt = settings.encoder.resolve_pix_fmt(info.width, info.height, info.colour)
    repeats = scan_repeats(local, settings.dedup_threshold, len(pts)) if settings.dedup_threshold is not None else None
    ranges = chunk_boundaries(len(pts) - 1, index.keyframes, chunk_length.in_pairs(pts, info.time_base),
                              avoid=frozenset(repeats.dropped) if repeats else frozenset())
    rate_hint = full.nominal_rate(info.average_rate)
    chunks = []
    for n, (s, e) in enumerate(ranges):
        is_last = e == len(pts) - 1
        part = OutputTimeline(settings.spec, pts[s : e + 1], info.time_base, origin_pts=pts[0], first_index=s)
        chunks.append(
            ChunkSpec(
                job_id=job_id, chunk_index=n, chunk_count=len(ranges),
                source_uri=source_uri, source_etag=source_id.etag, source_size=source_id.size,
                first_frame=s, last_frame=e, first_pts=pts[s], last_pts=pts[e], origin_pts=pts[0],
                input_time_base=str(Fraction(info.time_base)), output_time_base=str(full.time_base),
                mode=settings.spec.mode, factor=settings.spec.factor,
                target_fps=str(settings.spec.target_fps) if settings.spec.target_fps is not None else None,
                expected_frames=part.output_count(include_tail=is_last), is_last=is_last,
                width=info.width, height=info.height, rotation=info.rotation,
                rate_hint=str(rate_hint) if rate_hint is not None else None,
                model=settings.model, weights_uri=settings.weights_uri, weights_sha256=settings.weights_sha256,
                codec=settings.encoder.codec, crf=settings.encoder.crf, preset=settings.encoder.preset,
                pix_fmt=output_pix_fmt, colour=info.colour.to_json() if info.colour else None,
                scene_threshold=settings.scene_threshold,
                batch_pairs=settings.batch_pairs, work_uri=layout.work_uri, output_uri=output_uri,
                audio_mode=settings.resolved_audio_mode(), **(repeats.chunk_fields(s, e) if repeats else {}),
                subtitle_mode=settings.resolved_subtitle_mode(),
                sample_aspect_ratio=str(info.sample_aspect_ratio) if info.sample_aspect_ratio else None,
                field_order=info.field_order,
            )
        )
    job = {
        "job_id": job_id,
        "source_uri": source_uri,
        "output_uri": output_uri,
        "input_frames": len(pts),
        "output_frames": full.output_count(),
        "output_time_base": str(full.time_base),
        "tail_policy": TAIL_POLICY,
        # repaired or sparse input timestamps: the report and the CLI say so
        "timestamps": "; ".join(index.notes) or TIMESTAMPS_AS_IN_FILE,
        # what the report says: a source without audio gets none, whatever the mode would have done with it
        "audio_mode": settings.resolved_audio_mode() if info.audio is not None else "none (the source has no audio)",
        "stretch": settings.spec.stretch,
        **(repeats.report() if repeats else {}),  # --dedup: the measure and how many repeats were dropped or kept
        "subtitles": describe_side_streams(info, settings.resolved_subtitle_mode(), settings.spec.stretch),
    }
    return Plan(chunks, job, layout, index)


def check_output_clock(output_uri: str, timeline: OutputTimeline, pts: Sequence[int]) -> None:
    """Before any work: the closest output frames must land on distinct ticks of the output container's
    clock (Matroska: 1 ms, which holds up to 1000 frames/s); within a pair they are one input step apart."""
    from slomo_core.video.encode import check_clock_resolution, container_clock, muxer_for

    clock = container_clock(muxer_for(output_uri), timeline.time_base)
    step = min(b - a for a, b in zip(pts, pts[1:])) if timeline.spec.factor is not None else 1
    check_clock_resolution(output_uri, [0, step], timeline.time_base, clock)


def default_work_root(output_uri: str) -> str:
    """Job state lives beside the outputs (same bucket or disk), under a hidden folder."""
    parent = output_uri.rsplit("/", 1)[0] if "/" in output_uri else "."
    return join(parent, ".slomo-work")


def job_layout_for(source_uri: str, output_uri: str, work_root: str, settings: JobSettings, chunk_length: ChunkLength,
                   options: StorageOptions | None, source_id: ObjectIdentity | None = None) -> JobLayout:
    """Where the job of exactly these settings keeps its state; needs no probing (a HEAD of the source,
    unless the caller made it already and passes ``source_id``)."""
    source_id = source_id or identity(source_uri, options)
    return JobLayout.for_job(source_uri, source_id, output_uri, work_root, settings, chunk_length)


def is_converted(source_uri: str, output_uri: str, work_root: str, settings: JobSettings, chunk_length: ChunkLength,
                 options: StorageOptions | None) -> bool:
    """True when the job of exactly these settings finished (its DONE marker) and its output exists."""
    done = job_layout_for(source_uri, output_uri, work_root, settings, chunk_length, options).done
    return exists(done, options) and exists(output_uri, options)
