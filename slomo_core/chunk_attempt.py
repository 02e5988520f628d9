"""One attempt at a chunk: decode its frames, interpolate, encode a segment, upload it, commit it.

An attempt writes its segment to a unique key and commits by writing the chunk's marker last; a chunk
whose marker exists is done, whatever happened to other attempts. The rendering loop here is the only
one: a Ray actor (tasks/chunk_workers.py) and a single-machine conversion (convert.py) both call
run_chunk, so chunked and unchunked, local and distributed runs share every line.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from fractions import Fraction

import numpy as np
from av.video.frame import VideoFrame

from slomo_core.dedup import frame_set
from slomo_core.errors import InputError, SlomoError
from slomo_core.interp.base import FrameInterpolator, PairRequest
from slomo_core.manifest import ChunkSpec, ChunkStatus, CommitMarker, write_status
from slomo_core.pipelining import BackgroundSink, prefetch
from slomo_core.plan import JobLayout
from slomo_core.progress import ProgressReporter
from slomo_core.scene import SceneCutDetector
from slomo_core.scratch import scratch_dir
from slomo_core.stage_clock import StageClock
from slomo_core.storage import (
    ObjectIdentity,
    StorageOptions,
    file_sha256,
    localize,
    upload,
)
from slomo_core.timestamps import OutputFrame, OutputTimeline, retimed
from slomo_core.video.decode import DecodedFrame, iter_frames
from slomo_core.video.encode import VideoEncoder
from slomo_core.video.probe import FrameIndex

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]  # called with the number of frames written so far by this chunk
ENCODE_QUEUE = 16  # frames waiting for the encoder thread (bounded: ~100 MB at 1080p)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# Two kept frames, the outputs between them (t relative to them), and whether the second holds the first.
KeptPair = tuple[DecodedFrame, DecodedFrame, list[OutputFrame], bool]


def _kept_pairs(frames: Iterator[DecodedFrame], timeline: OutputTimeline, dropped: AbstractSet[int],
                held: AbstractSet[int]) -> Iterator[KeptPair]:
    """Consecutive kept frames with the outputs of every source pair between them, re-timed onto them.

    Without --dedup every frame is kept and these are the source's pairs, outputs unchanged. A dropped
    repeat's outputs are interpolated from the kept frames around it at their real times; a ``held``
    frame repeats the one before on purpose (a still), so its pair shows the first picture throughout.
    """
    anchor: DecodedFrame | None = None
    previous: DecodedFrame | None = None
    pending: list[tuple[OutputFrame, int, int]] = []  # outputs since the anchor, with their source pair's pts
    for frame in frames:
        if previous is None:
            if frame.index in dropped:
                raise InputError(f"chunk starts on frame {frame.index}, a dropped repeat: the plan is inconsistent")
        else:
            pending += [(out, previous.pts, frame.pts)
                        for out in timeline.outputs_between(previous.index, previous.pts, frame.pts)]
        previous = frame
        if frame.index in dropped:
            continue
        if anchor is not None:
            outs = [retimed(out, pi, pj, anchor.index, anchor.pts, frame.pts) for out, pi, pj in pending]
            yield anchor, frame, outs, frame.index in held
        anchor, pending = frame, []
    if pending:
        raise InputError(f"chunk ends on frame {previous.index}, a dropped repeat: the plan is inconsistent")  # type: ignore[union-attr]


def _original(frame: DecodedFrame) -> np.ndarray | VideoFrame:
    """An input frame as it goes out: its own decoded YUV samples (no RGB round trip) when kept."""
    return frame.source if frame.source is not None else frame.image


class _Writer:
    """Hands frames to the encoder thread in order and counts them."""

    def __init__(self, sink: BackgroundSink[tuple[np.ndarray | VideoFrame, int]],
                 progress: ProgressCallback | None) -> None:
        self.sink, self.progress, self.count = sink, progress, 0

    def write(self, image: np.ndarray | VideoFrame, out: OutputFrame) -> None:
        self.sink.submit((image, out.pts))
        self.count += 1
        if self.progress is not None:
            self.progress(self.count)


def _counted(frames: Iterator[DecodedFrame], spec: ChunkSpec) -> Iterator[DecodedFrame]:
    """Checks the first frame against the plan as it streams (the decoder checks the count)."""
    for frame in frames:
        if frame.index == spec.first_frame and frame.pts != spec.first_pts:
            raise InputError(f"{spec.source_uri}: frame {frame.index} has pts {frame.pts}, the plan says {spec.first_pts}")
        yield frame


def _emit_batch(
    batch: list[KeptPair],
    interpolator: FrameInterpolator,
    detector: SceneCutDetector | None,
    writer: _Writer,
    cuts: list[int],
    clock: StageClock,
) -> None:
    """Interpolate all non-cut, non-held pairs of the batch in one call, then write every output in order."""
    with clock.measure("scene"):
        is_cut = [detector is not None and not hold and bool(outs) and detector.is_cut(a.image, b.image)
                  for a, b, outs, hold in batch]
    requests, owners = [], []
    for n, (a, b, outs, hold) in enumerate(batch):
        times = tuple(float(o.t) for o in outs if o.t > 0)
        if is_cut[n]:
            cuts.append(a.index)
        elif times and not hold:
            requests.append(PairRequest(a.image, b.image, times))
            owners.append(n)
    with clock.measure("model"):
        synthesized = dict(zip(owners, interpolator.interpolate(requests))) if requests else {}
    for n, (a, _, outs, hold) in enumerate(batch):
        made = iter(synthesized.get(n, ()))
        for out in outs:
            image = _original(a) if out.t == 0 or is_cut[n] or hold else next(made)
            writer.write(image, out)


def render_chunk(
    spec: ChunkSpec,
    source_path: str,
    segment_path: str,
    interpolator: FrameInterpolator,
    progress: ProgressCallback | None = None,
    clock: StageClock | None = None,
    index: FrameIndex | None = None,
) -> tuple[int, list[int]]:
    """Decode frames first..last of a local source and encode this chunk's outputs into a local segment.

    Returns (frames written, pairs treated as scene cuts; with --dedup a cut is named by the kept frame
    before it). Fails if a count or pts disagrees with the plan.
    ``clock`` collects busy seconds per stage (decode, scene, model, encode). ``index``: the source's frame
    index when the caller has it (a run in the planning process), else read here.
    """
    clock = clock or StageClock()
    # Frames stream through: a pair's outputs need only its two pts and p_0, never the whole chunk.
    timeline = OutputTimeline(
        spec.rate_spec, [spec.first_pts, spec.last_pts], Fraction(spec.input_time_base),
        origin_pts=spec.origin_pts, first_index=spec.first_frame,
    )
    detector = SceneCutDetector(spec.scene_threshold) if spec.scene_threshold is not None else None
    cuts: list[int] = []
    last: DecodedFrame | None = None
    rate_hint = Fraction(spec.rate_hint) if spec.rate_hint else None
    with VideoEncoder(
        segment_path, spec.width, spec.height, Fraction(spec.output_time_base), spec.encoder,
        frame_rate_hint=rate_hint, rotation=spec.rotation, colour=spec.source_colour,
        sample_aspect_ratio=Fraction(spec.sample_aspect_ratio) if spec.sample_aspect_ratio else None,
        progressive=spec.field_order == "progressive",
    ) as encoder:
        # Decoding, interpolation and encoding overlap: decoder and encoder run in their own threads.
        encode = clock.timed("encode", encoder.write)
        sink: BackgroundSink[tuple[np.ndarray | VideoFrame, int]] = BackgroundSink(lambda item: encode(*item), ENCODE_QUEUE)
        writer = _Writer(sink, progress)
        try:
            batch: list[KeptPair] = []
            frames = clock.timed_iter("decode", iter_frames(source_path, spec.first_frame, spec.last_frame + 1,
                                                               index=index, keep_source=True))
            decoded = prefetch(frames, 2 * spec.batch_pairs + 2)
            dropped, held = frame_set(spec.dropped_frames), frame_set(spec.held_frames)
            for pair in _kept_pairs(_counted(decoded, spec), timeline, dropped, held):
                batch.append(pair)
                last = pair[1]
                if len(batch) == spec.batch_pairs:
                    _emit_batch(batch, interpolator, detector, writer, cuts, clock)
                    batch = []
            if batch:
                _emit_batch(batch, interpolator, detector, writer, cuts, clock)
            if last is None or last.pts != spec.last_pts:
                raise InputError(f"{spec.source_uri}: chunk {spec.chunk_index} ended before frame {spec.last_frame}")
            if spec.is_last:
                writer.write(_original(last), timeline.tail_output(last.index, last.pts))
            with clock.measure("encode"):
                sink.close()
                encoder.close()  # flushing the encoder's lookahead is encode time too
        except BaseException:
            sink.abandon()
            raise
    if writer.count != spec.expected_frames:
        raise InputError(f"chunk {spec.chunk_index}: wrote {writer.count} frames, the plan expects {spec.expected_frames}")
    return writer.count, cuts


def committed_segment(spec: ChunkSpec, options: StorageOptions | None = None) -> CommitMarker | None:
    """The commit marker of a chunk (segment uri, sha256, frames), or None when not committed."""
    return CommitMarker.read(JobLayout(spec.work_uri).commit_marker(spec.chunk_index), options)


def run_chunk(
    spec: ChunkSpec,
    interpolator: FrameInterpolator,
    *,
    cache_dir: str,
    options: StorageOptions | None = None,
    progress: ProgressCallback | None = None,
    clock: StageClock | None = None,
    index: FrameIndex | None = None,
) -> ChunkStatus:
    """One attempt at a chunk: skip if committed; else render, upload to a unique key, commit, record.

    A failure is recorded as a Parquet status row with its error, then raised again: SlomoError for a
    problem with the input or plan (retrying will not help), anything else for the caller to retry.
    ``index``: the planner's frame index of this very source (in-process runs), so it is not read again.
    """
    chunk_clock = StageClock()  # this attempt's own, recorded in its marker and added to ``clock``
    layout = JobLayout(spec.work_uri)
    attempt = f"{int(time.time())}-{uuid.uuid4().hex[:12]}"
    started = time.time()
    me = worker_id()
    existing = committed_segment(spec, options)
    if existing is not None:
        return ChunkStatus(spec.job_id, spec.chunk_index, existing.attempt, me, started, time.time(),
                           existing.frames, existing.segment_uri, existing.sha256, None, skipped=True)
    reporter = ProgressReporter(layout.progress_record(spec.chunk_index, attempt), spec.expected_frames, options)

    def frames_written(count: int) -> None:
        reporter(count)
        if progress is not None:
            progress(count)

    try:
        with scratch_dir("slomo-chunk-") as tmp:
            with chunk_clock.measure("download"):
                identity = ObjectIdentity(spec.source_etag, spec.source_size)
                source = localize(spec.source_uri, cache_dir, identity, options)
            segment_path = os.path.join(tmp, "segment.mp4")
            frames, cuts = render_chunk(spec, source, segment_path, interpolator, frames_written, chunk_clock,
                                         index)
            with chunk_clock.measure("upload"):
                digest = file_sha256(segment_path)
                segment_uri = layout.segment(spec.chunk_index, attempt)
                upload(segment_path, segment_uri, options)
        status = ChunkStatus(spec.job_id, spec.chunk_index, attempt, me, started, time.time(), frames, segment_uri,
                             digest, None)
        write_status(layout.status(spec.chunk_index, attempt), [status], options)
        # The commit: written last, so a marker always points at a complete, uploaded segment.
        marker = CommitMarker(attempt, segment_uri, digest, frames, me, cuts,
                              {k: round(v, 3) for k, v in chunk_clock.seconds().items()})
        marker.write(layout.commit_marker(spec.chunk_index), options)
    except Exception as exc:
        error = str(exc) if isinstance(exc, SlomoError) else f"{type(exc).__name__}: {exc}"
        reporter.discard()
        failed = ChunkStatus(spec.job_id, spec.chunk_index, attempt, me, started, time.time(), 0, None, None, error)
        try:
            write_status(layout.status(spec.chunk_index, attempt), [failed], options)
        except Exception as record_exc:  # the original failure matters more than its record (often the same fault)
            log.warning("could not record the failure of chunk %d: %s", spec.chunk_index, record_exc)
        raise
    if clock is not None:
        clock.merge(chunk_clock)
    log.info("chunk %d of %s committed: %d frames by %s", spec.chunk_index, spec.job_id, frames, me)
    return status
