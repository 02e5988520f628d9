"""Stitch encoded video parts into the final file (no re-encode) and add the source's audio once.

Parts are copied packet by packet. Their pts are kept (rounded to the nearest tick where the
container's clock is coarser, Matroska's 1 ms); their dts are rebuilt for the whole
output (each part's encoder chose dts for itself, and with B-frames and VFR timing the dts at a
part boundary can go backwards). The file is written under a temporary name next to the target
and moved into place only when complete, so a failure never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container
import av.error
import av.video.stream
import numpy as np

from slomo_core.errors import ConfigError, InputError, OutputError
from slomo_core.video.audio import AUDIO_MODES, add_audio, validate_audio_mode, video_start_time
from slomo_core.video.encode import check_clock_resolution, codec_tag_for, container_options, muxer_for
from slomo_core.video.probe import ffmpeg_reason, find_video_stream, open_input
from slomo_core.video.side_streams import add_subtitle_stream, keep_global_tags, keep_stream_tags, retimed_chapters

__all__ = ["AUDIO_MODES", "finalize"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _PartLayout:
    """Packet pts of every part in decode order and the dts to write for each, over the whole output."""

    pts: list[np.ndarray]  # one int64 array per part, decode order
    dts: list[np.ndarray]
    time_base: Fraction


def _codec_signature(stream: av.video.stream.VideoStream) -> tuple[object, ...]:
    ctx = stream.codec_context
    return (ctx.name, ctx.width, ctx.height, ctx.pix_fmt, stream.time_base, bytes(ctx.extradata or b""))


def _packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[av.Packet]:
    for packet in container.demux(stream):
        if packet.size == 0 and packet.pts is None and packet.dts is None:
            continue  # EOF flush packet
        if packet.is_discard:
            continue
        yield packet


def _scan_part(path: str) -> tuple[tuple[object, ...], np.ndarray]:
    with open_input(path) as container:
        stream = find_video_stream(container, path)
        signature = _codec_signature(stream)
        pts: list[int] = []
        try:
            for packet in _packets(container, stream):
                if packet.pts is None:
                    raise InputError(f"{path}: video packet {len(pts)} has no pts")
                pts.append(packet.pts)
        except av.error.FFmpegError as err:
            raise InputError(f"{path}: cannot read video packet {len(pts)} ({ffmpeg_reason(err)})") from err
    if not pts:
        raise InputError(f"{path}: video part has no frames")
    return signature, np.asarray(pts, dtype=np.int64)


def decode_order_dts(pts: np.ndarray) -> np.ndarray:
    """Strictly increasing dts with dts <= pts for packets given in decode order.

    With D the deepest reordering (how far a packet is decoded ahead of its display rank), the
    j-th dts is the (j-D)-th smallest pts; the first D are placed just before the first pts, one
    reorder delay earlier, as x264 does.
    """
    n = len(pts)
    order = np.argsort(pts, kind="stable")
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n)
    sorted_pts = pts[order]
    delay = int(max(0, int((np.arange(n) - ranks).max()))) if n else 0
    delay = min(delay, n - 1)
    dts = np.empty(n, dtype=np.int64)
    dts[delay:] = sorted_pts[: n - delay]
    dts[:delay] = sorted_pts[:delay] - (sorted_pts[delay] - sorted_pts[0])
    return dts


def _plan_parts(parts: Sequence[str]) -> _PartLayout:
    signatures, pts_lists = [], []
    for path in parts:
        signature, pts = _scan_part(path)
        signatures.append(signature)
        pts_lists.append(pts)
    for path, signature in zip(parts[1:], signatures[1:]):
        if signature != signatures[0]:
            raise InputError(
                f"{path}: codec parameters differ from {parts[0]} ({signature[:5]} vs {signatures[0][:5]}); "
                "parts must come from identical encoder settings"
            )
    for (prev_path, prev), (path, cur) in zip(zip(parts, pts_lists), zip(parts[1:], pts_lists[1:])):
        if cur.min() <= prev.max():
            raise InputError(
                f"{path}: starts at pts {int(cur.min())}, not after the end of {prev_path} (pts {int(prev.max())})"
            )
    everything = np.concatenate(pts_lists)
    if len(np.unique(everything)) != len(everything):
        raise InputError(f"{parts[0]}: video parts contain duplicate timestamps")
    dts = decode_order_dts(everything)
    bounds = np.cumsum([0] + [len(p) for p in pts_lists])
    with open_input(parts[0]) as container:
        time_base = find_video_stream(container, parts[0]).time_base
    return _PartLayout(pts=pts_lists, dts=[dts[a:b] for a, b in zip(bounds[:-1], bounds[1:])], time_base=time_base)


def _video_packets(
    parts: Sequence[str], layout: _PartLayout, out_stream: av.video.stream.VideoStream
) -> Iterator[av.Packet]:
    for path, pts, dts in zip(parts, layout.pts, layout.dts):
        with open_input(path) as container:
            stream = find_video_stream(container, path)
            j = 0
            try:
                for packet in _packets(container, stream):
                    if j >= len(pts) or packet.pts != pts[j]:
                        raise InputError(f"{path}: changed while being stitched (packet {j})")
                    packet.dts = int(dts[j])
                    packet.stream = out_stream
                    j += 1
                    yield packet
            except av.error.FFmpegError as err:
                raise InputError(f"{path}: cannot read video packet {j} ({ffmpeg_reason(err)})") from err
            if j != len(pts):
                raise InputError(f"{path}: changed while being stitched ({j} packets, expected {len(pts)})")


def _packet_time(packet: av.Packet) -> Fraction:
    ts = packet.dts if packet.dts is not None else packet.pts
    return Fraction(ts or 0) * packet.time_base


def _temp_path(out_path: str) -> str:
    directory, name = os.path.split(os.path.abspath(out_path))
    return os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.partial")


def _write(
    tmp: str,
    out_path: str,
    muxer: str,
    parts: Sequence[str],
    layout: _PartLayout,
    audio_source: str | None,
    audio_mode: str,
    stretch: float,
    subtitle_mode: str,
) -> None:
    options = container_options(muxer, layout.time_base)
    if muxer in ("mp4", "mov"):
        options["movflags"] = options.get("movflags", "") + "+faststart"
    with contextlib.ExitStack() as stack:
        template_container = stack.enter_context(open_input(parts[0]))
        template = find_video_stream(template_container, parts[0])
        try:
            output = stack.enter_context(av.open(tmp, mode="w", format=muxer, options=options))
        except (av.error.FFmpegError, OSError) as err:
            raise OutputError(f"{out_path}: cannot create output ({ffmpeg_reason(err)})") from err
        try:
            out_video = output.add_stream_from_template(template, opaque=True)  # codec params only, no encoder
        except (av.error.FFmpegError, ValueError) as err:
            raise OutputError(f"{out_path}: cannot hold the parts' video ({ffmpeg_reason(err)})") from err
        tag = codec_tag_for(muxer, template.codec_context.name)
        if tag:
            out_video.codec_tag = tag
        audio_packets: Iterator[av.Packet] | None = None
        side_packets: list[Iterator[av.Packet]] = []
        if audio_source is not None:
            source = stack.enter_context(open_input(audio_source))
            keep_global_tags(source, output)
            keep_stream_tags(find_video_stream(source, audio_source), out_video)
            audio_packets = add_audio(output, source, mode=audio_mode, stretch=stretch, source_path=audio_source)
            side_packets = _add_side_streams(stack, output, source, audio_source, subtitle_mode, stretch)
        try:
            output.start_encoding()
        except av.error.FFmpegError as err:
            raise OutputError(f"{out_path}: cannot write the file header ({ffmpeg_reason(err)})") from err
        if (layout.time_base / out_video.time_base).denominator != 1:  # Matroska: FFmpeg rounds to 1 ms
            check_clock_resolution(out_path, np.concatenate(layout.pts).tolist(), layout.time_base, out_video.time_base)

        streams = [_video_packets(parts, layout, out_video)]
        if audio_packets is not None:
            streams.append(audio_packets)
        streams += side_packets
        for packet in heapq.merge(*streams, key=_packet_time):
            try:
                output.mux(packet)
            except av.error.FFmpegError as err:
                raise OutputError(f"{out_path}: cannot write packet ({ffmpeg_reason(err)})") from err


def _add_side_streams(
    stack: contextlib.ExitStack, output: av.container.OutputContainer, source: av.container.InputContainer,
    source_path: str, mode: str, stretch: float,
) -> list[Iterator[av.Packet]]:
    """Chapters, and each subtitle stream from its own opening of the source (demuxing is per container)."""
    start = video_start_time(source)
    output.set_chapters(retimed_chapters(source, mode, stretch, start))
    packets = []
    for index in range(len(source.streams.subtitles)):
        own = stack.enter_context(open_input(source_path))
        stream = add_subtitle_stream(output, own, index, mode=mode, stretch=stretch, start=start,
                                     source_path=source_path)
        if stream is not None:
            packets.append(stream)
    return packets


def finalize(
    video_parts: list[str],
    out_path: str,
    *,
    audio_source: str | None,
    audio_mode: str,
    stretch: float = 1.0,
    subtitle_mode: str = "drop",
) -> None:
    """Concatenate video-only ``video_parts`` (same codec parameters, consecutive pts) into
    ``out_path`` without re-encoding, plus ``audio_source``'s audio per ``audio_mode``.

    "copy": audio packets unchanged (frame-rate conversion keeps the duration). "drop": no audio.
    "stretch": audio slowed by ``stretch`` (4.0 = 4x longer) keeping pitch, re-encoded to AAC.
    A source without audio gives a video-only file in every mode. Audio time 0 is the source's
    first video frame, which is where the output video starts. ``audio_source`` also gives the output its
    global and language tags, and its subtitles and chapters per ``subtitle_mode`` (copy, stretch by
    ``stretch``, or drop: see side_streams.py). The output appears at
    ``out_path`` only when complete (temporary file + os.replace).
    """
    validate_audio_mode(audio_mode, stretch)
    if not video_parts:
        raise ConfigError(f"{out_path}: no video parts to stitch")
    muxer = muxer_for(out_path)
    directory = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(directory):
        raise OutputError(f"{out_path}: directory {directory} does not exist")
    layout = _plan_parts(video_parts)
    tmp = _temp_path(out_path)
    try:
        _write(tmp, out_path, muxer, video_parts, layout, audio_source, audio_mode, stretch, subtitle_mode)
        os.replace(tmp, out_path)
    except OSError as err:
        _remove_quietly(tmp)
        raise OutputError(f"{out_path}: cannot write output ({ffmpeg_reason(err)})") from err
    except BaseException:
        _remove_quietly(tmp)
        raise
    log.info("%s: stitched %d part(s), %d frames", out_path, len(video_parts), sum(len(p) for p in layout.pts))


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
