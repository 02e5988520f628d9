"""Convert one video on one machine: decode -> interpolate -> encode -> mux, written atomically.

This is the in-process path (and the per-chunk worker of distributed runs later); it owns the
ordering of output frames, scene-cut handling and the "nothing half-written" guarantee.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from slomo_core.errors import ConfigError, InputError, OutputError
from slomo_core.interp.base import FrameInterpolator, PairRequest
from slomo_core.scene import SceneCutDetector
from slomo_core.timing import TAIL_POLICY, OutputFrame, OutputTimeline, RateSpec
from slomo_core.video.audio import AUDIO_MODES
from slomo_core.video.decode import DecodedFrame, iter_frames
from slomo_core.video.encode import EncoderSettings, VideoEncoder
from slomo_core.video.mux import finalize
from slomo_core.video.probe import VideoInfo, probe, read_frame_timestamps

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ConvertOptions:
    """Everything about a conversion except the model; defaults are what a newcomer gets."""

    spec: RateSpec
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    audio_mode: str | None = None  # None: copy in fps mode, drop in slowmo mode
    scene_threshold: float | None = SceneCutDetector().threshold  # None disables scene-cut detection
    batch_pairs: int = 4
    overwrite: bool = False

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
        if self.batch_pairs < 1:
            raise ConfigError(f"batch_pairs must be >= 1, got {self.batch_pairs}")
        if self.scene_threshold is not None and not 0.0 < self.scene_threshold <= 1.0:
            raise ConfigError(f"scene threshold must be in (0, 1], got {self.scene_threshold}")


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
    tail_policy: str = TAIL_POLICY

    @property
    def frames_per_second(self) -> float:
        return self.output_frames / self.seconds if self.seconds > 0 else float("inf")


def check_output_path(source: str, output: str, overwrite: bool) -> None:
    """Fail before any work when the output cannot be written."""
    if os.path.abspath(source) == os.path.abspath(output):
        raise OutputError(f"{output}: output would overwrite the input")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise OutputError(f"{output}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{output}: directory {parent} is not writable")
    if os.path.isdir(output):
        raise OutputError(f"{output}: is a directory")
    if os.path.exists(output) and not overwrite:
        raise OutputError(f"{output}: already exists (pass --overwrite to replace it)")
    if os.path.splitext(output)[1].lower() not in (".mp4", ".mov", ".mkv"):
        raise OutputError(f"{output}: unsupported container (use .mp4, .mov or .mkv)")


def _pairs(frames: Iterator[DecodedFrame]) -> Iterator[tuple[DecodedFrame, DecodedFrame]]:
    previous = next(frames, None)
    for frame in frames:
        yield previous, frame
        previous = frame


class _OrderedWriter:
    """Writes frames in timeline order and counts them for progress."""

    def __init__(self, encoder: VideoEncoder, total: int, progress: ProgressCallback | None) -> None:
        self.encoder, self.total, self.progress, self.count = encoder, total, progress, 0

    def write(self, image: np.ndarray, out: OutputFrame) -> None:
        self.encoder.write(image, out.pts)
        self.count += 1
        if self.progress is not None:
            self.progress(self.count, self.total)


def _emit_batch(
    batch: list[tuple[DecodedFrame, DecodedFrame]],
    timeline: OutputTimeline,
    interpolator: FrameInterpolator,
    detector: SceneCutDetector | None,
    writer: _OrderedWriter,
    cuts: list[int],
) -> None:
    """Interpolate all non-cut pairs of the batch in one call, then write every output in order."""
    plans = [(a, b, timeline.pair_outputs(a.index)) for a, b in batch]
    is_cut = [detector is not None and bool(outs) and detector.is_cut(a.image, b.image) for a, b, outs in plans]
    requests, owners = [], []
    for n, (a, b, outs) in enumerate(plans):
        times = tuple(float(o.t) for o in outs if o.t > 0)
        if is_cut[n]:
            cuts.append(a.index)
        elif times:
            requests.append(PairRequest(a.image, b.image, times))
            owners.append(n)
    synthesized = dict(zip(owners, interpolator.interpolate(requests))) if requests else {}
    for n, (a, _, outs) in enumerate(plans):
        made = iter(synthesized.get(n, ()))
        for out in outs:
            image = a.image if out.t == 0 or is_cut[n] else next(made)
            writer.write(image, out)


def convert_video(
    source: str,
    output: str,
    interpolator: FrameInterpolator,
    options: ConvertOptions,
    progress: ProgressCallback | None = None,
) -> ConvertReport:
    """Convert ``source`` into ``output``; on any failure the output path is left untouched."""
    options.validate()
    audio_mode = options.resolved_audio_mode()
    info: VideoInfo = probe(source)
    check_output_path(source, output, options.overwrite)
    pts = read_frame_timestamps(source)
    if len(pts) < 2:
        raise InputError(f"{source}: has {len(pts)} video frame(s); interpolation needs at least 2")
    timeline = OutputTimeline(options.spec, pts, info.time_base)
    detector = SceneCutDetector(options.scene_threshold) if options.scene_threshold is not None else None
    started = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix=".slomo-", dir=os.path.dirname(os.path.abspath(output)))
    try:
        # Parts are always MP4: exact timestamps in any time base; finalize checks what the target can hold.
        part = os.path.join(workdir, "video.mp4")
        cuts: list[int] = []
        with VideoEncoder(
            part,
            info.width,
            info.height,
            timeline.time_base,
            options.encoder,
            frame_rate_hint=timeline.nominal_rate(info.average_rate),
            rotation=info.rotation,
        ) as encoder:
            writer = _OrderedWriter(encoder, timeline.output_count(), progress)
            last_frame: DecodedFrame | None = None
            batch: list[tuple[DecodedFrame, DecodedFrame]] = []
            for a, b in _pairs(iter_frames(source, timestamps=pts)):
                last_frame = b
                if a.pts != pts[a.index] or b.pts != pts[b.index]:
                    raise InputError(f"{source}: frame {b.index} decoded with pts {b.pts}, index says {pts[b.index]}")
                batch.append((a, b))
                if len(batch) == options.batch_pairs:
                    _emit_batch(batch, timeline, interpolator, detector, writer, cuts)
                    batch = []
            decoded = last_frame.index + 1 if last_frame is not None else 0
            if decoded != len(pts):
                raise InputError(f"{source}: decoded {decoded} frames, the stream index lists {len(pts)}")
            if batch:
                _emit_batch(batch, timeline, interpolator, detector, writer, cuts)
            writer.write(last_frame.image, timeline.last_output())
        finalize([part], output, audio_source=source, audio_mode=audio_mode, stretch=options.spec.stretch)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = ConvertReport(
        source=source,
        output=output,
        interpolator=interpolator.name,
        input_frames=len(pts),
        output_frames=writer.count,
        output_time_base=timeline.time_base,
        scene_cuts=tuple(cuts),
        audio_mode=audio_mode,
        seconds=time.perf_counter() - started,
    )
    log.info("converted %s -> %s: %d -> %d frames", source, output, report.input_frames, report.output_frames)
    return report

