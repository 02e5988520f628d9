"""Reassemble a job's committed segments into the final output: no re-encode, audio once, validated.

The output is built locally, checked against the plan (frame count and every timestamp), uploaded
once, and only then marked done; a job with an uncommitted chunk names the chunks it lacks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from slomo_core.chunk_attempt import committed_segment
from slomo_core.errors import InputError, OutputError, SlomoError
from slomo_core.keys import refuse_same_object
from slomo_core.manifest import ChunkSpec, DoneRecord
from slomo_core.plan import JobLayout
from slomo_core.scratch import scratch_dir
from slomo_core.storage import (
    ObjectIdentity,
    StorageOptions,
    discard,
    download,
    exists,
    file_sha256,
    localize,
    upload,
)
from slomo_core.timestamps import OutputTimeline
from slomo_core.video.mux import finalize
from slomo_core.video.probe import FrameIndex, probe, read_frame_timestamps


class IncompleteJobError(SlomoError):
    """Some chunks have no committed segment yet: re-run the job to redo only those."""

    def __init__(self, job_id: str, missing: Sequence[int]) -> None:
        shown = ", ".join(str(i) for i in missing[:20]) + (" ..." if len(missing) > 20 else "")
        super().__init__(f"job {job_id}: {len(missing)} chunk(s) not committed: {shown}")
        self.missing = list(missing)


EXACT = "exact"


@dataclass(frozen=True)
class StitchReport:
    job_id: str
    output_uri: str
    frames: int
    sha256: str
    already_done: bool = False
    timestamps: str = EXACT  # or how far a container's coarse clock rounded them (validate_output)


def expected_seconds(chunks: Sequence[ChunkSpec], source_path: str, index: FrameIndex | None = None) -> list[Fraction]:
    """Presentation time of every output frame the plan promises, from the source's own timestamps
    (``index``: the planner's reading of them, in the process that planned; else read here)."""
    head = chunks[0]
    pts = index.pts if index is not None else read_frame_timestamps(source_path)
    timeline = OutputTimeline(head.rate_spec, pts, Fraction(head.input_time_base))
    return [o.pts * timeline.time_base for o in timeline.all_outputs()]


def validate_output(path: str, expected: Sequence[Fraction]) -> str:
    """Every frame at the promised time, none missing, none extra; returns how exact that is, for the report.

    Exact where the container holds the plan's times (MP4/MOV always). A container with a coarser fixed
    clock (Matroska: 1 ms) stores them rounded, as FFmpeg does: then at most half a tick off is accepted.
    """
    info = probe(path)
    got = [p * info.time_base for p in read_frame_timestamps(path)]
    if len(got) != len(expected):
        raise OutputError(f"stitched output has {len(got)} frames, the plan promises {len(expected)}")
    tick = Fraction(info.time_base)
    exact = all((t / tick).denominator == 1 for t in expected)
    limit = Fraction(0) if exact else tick / 2
    worst = Fraction(0)
    for n, (a, b) in enumerate(zip(got, expected)):
        if abs(a - b) > limit:
            allowed = "" if exact else f" (more than half of the container's {tick} s tick)"
            raise OutputError(f"stitched output frame {n} is at {a} s, the plan says {b} s{allowed}")
        worst = max(worst, abs(a - b))
    if exact:
        return EXACT
    return (f"rounded to the container's {tick} s clock: at most {float(worst) * 1000:.3f} ms "
            f"from the plan (limit: half a tick, {float(limit) * 1000:g} ms)")


def stitch_job(
    chunks: Sequence[ChunkSpec], *, cache_dir: str, options: StorageOptions | None = None,
    index: FrameIndex | None = None,
) -> StitchReport:
    head = chunks[0]
    layout = JobLayout(head.work_uri)
    if exists(layout.done, options) and exists(head.output_uri, options):
        done = DoneRecord.read(layout.done, options)
        return StitchReport(head.job_id, head.output_uri, done.frames, done.sha256, already_done=True,
                            timestamps=done.timestamps)
    markers = {c.chunk_index: committed_segment(c, options) for c in chunks}
    missing = [i for i, m in markers.items() if m is None]
    if missing:
        raise IncompleteJobError(head.job_id, missing)
    source = localize(head.source_uri, cache_dir, ObjectIdentity(head.source_etag, head.source_size), options)
    with scratch_dir("slomo-stitch-") as tmp:
        parts = []
        for chunk in sorted(chunks, key=lambda c: c.chunk_index):
            marker = markers[chunk.chunk_index]
            local = os.path.join(tmp, f"{chunk.chunk_id}.mp4")
            download(marker.segment_uri, local, options)
            if file_sha256(local) != marker.sha256:
                raise InputError(f"{marker.segment_uri}: segment does not match its committed sha256")
            parts.append(local)
        extension = os.path.splitext(head.output_uri)[1].lower() or ".mp4"
        output = os.path.join(tmp, "output" + extension)
        try:
            finalize(parts, output, audio_source=source, audio_mode=head.audio_mode, stretch=head.rate_spec.stretch,
                     subtitle_mode=head.subtitle_mode)
            expected = expected_seconds(chunks, source, index)
            timestamps = validate_output(output, expected)
        except (InputError, OutputError) as exc:  # name the user's files, not this scratch folder's copies
            message = str(exc).replace(output, head.output_uri).replace(source, head.source_uri)
            raise type(exc)(message) from None
        digest = file_sha256(output)
        refuse_same_object(head.source_uri, head.output_uri, options)  # checked at planning; again right before
        upload(output, head.output_uri, options)
    try:
        DoneRecord(head.job_id, head.output_uri, len(expected), digest, timestamps).write(layout.done, options)
    except BaseException:
        # An output without its DONE marker would make the re-run refuse it as "already exists": take it back.
        discard(head.output_uri, options)
        raise
    return StitchReport(head.job_id, head.output_uri, len(expected), digest, timestamps=timestamps)
