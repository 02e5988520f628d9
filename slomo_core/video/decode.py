"""Decode video frames to RGB arrays with their exact presentation timestamps.

Frames come in presentation order with the stream's own pts (never a counter), so VFR and
B-frame files keep their timing. A range of frames (a chunk) is decoded by seeking to the keyframe
at or before its first frame and dropping what precedes it; the count is checked, never padded.

Colour: YUV -> RGB uses the matrix and range the file is tagged with. Untagged files get the
guess players make: BT.709 from 720 lines up, BT.601 below (colour.py). Sources deeper than 8 bits
give 16-bit RGB. ``encode.py`` converts back with the same matrix and range and copies the tags, so
``decode(encode(x)) ~= x`` and the output looks like the input.
Both directions use swscale with ``SWS_FLAGS`` (bilinear chroma, accurate rounding, full chroma
interpolation): swscale's default fast YUV->RGB path is biased by about -1 level per channel, so a
round trip through the defaults darkens every frame slightly.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import av
import av.error
import av.video.stream
import numpy as np
from av.video.frame import VideoFrame
from av.video.reformatter import ColorRange, Interpolation, VideoReformatter

from slomo_core.errors import ConfigError, InputError
from slomo_core.video.colour import colour_of_frame
from slomo_core.video.probe import FrameIndex, ffmpeg_reason, find_video_stream, open_input, read_frame_index

log = logging.getLogger(__name__)

# How many times to step back to an earlier keyframe when a seek lands after the wanted frame
# (possible when a keyframe's dts is before a wanted frame's pts but its pts after it).
_MAX_SEEK_RETRIES = 4

# swscale flags for YUV<->RGB, shared with encode.py (unbiased round trip; ~17 ms per 1080p frame).
SWS_FLAGS = (
    Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT | Interpolation.FULL_CHR_H_INP
)
# YUV -> 16-bit RGB (sources deeper than 8 bits): without FULL_CHR_H_INT, which swscale gets wrong for
# 4:2:0 -> rgb48 (a 10-bit BT.2020 round trip was off by 225 codes on average, biased -130; 12 without it).
DEEP_SWS_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND


@dataclass(frozen=True)
class DecodedFrame:
    """One displayed frame: its display index in the file, its pts in the stream time base, RGB pixels.

    ``source`` is the decoded frame itself when asked for (``keep_source``), so an original frame can be
    re-encoded from its own YUV samples instead of a round trip through RGB.
    """

    index: int
    pts: int
    image: np.ndarray  # HxWx3 RGB, C-contiguous: uint8 for 8-bit sources, uint16 (full 16-bit scale) for deeper
    source: VideoFrame | None = None


def frame_to_rgb(frame: VideoFrame, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """HxWx3 RGB with the file's colour matrix and range (or the players' guess when untagged).

    uint8 for 8-bit frames, uint16 for deeper ones (10-bit samples never pass through 8 bits).
    """
    colour = colour_of_frame(frame)
    reformatter = reformatter or VideoReformatter()
    rgb = reformatter.reformat(
        frame, format=colour.rgb_format, src_colorspace=colour.sws_matrix,
        src_color_range=ColorRange(colour.effective_range),
        interpolation=SWS_FLAGS if colour.bit_depth <= 8 else DEEP_SWS_FLAGS,
    )
    return np.ascontiguousarray(rgb.to_ndarray())


def _frame_pts(frame: VideoFrame, path: str, index: int) -> int:
    if frame.pts is not None:
        return frame.pts
    best = getattr(frame, "best_effort_timestamp", None)
    if best is not None:
        return best
    raise InputError(f"{path}: frame {index} has no timestamp")


def _configure_threads(stream: av.video.stream.VideoStream, threads: int) -> None:
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads


def _decode_packets(packets: Iterator[av.Packet]) -> Iterator[VideoFrame]:
    for packet in packets:
        yield from packet.decode()  # the final empty packet from demux() flushes the decoder


def _frames_from_start(path: str, threads: int) -> Iterator[VideoFrame]:
    """All frames from the start of the file."""
    with open_input(path) as container:
        stream = find_video_stream(container, path)
        _configure_threads(stream, threads)
        yield from _decode_packets(container.demux(stream))


def _frames_from(path: str, target_pts: int, threads: int) -> Iterator[VideoFrame]:
    """Frames starting at or before the frame with ``target_pts``, via a keyframe seek.

    If a seek lands after the target, step back to the keyframe before the one it landed on; as a
    last resort decode from the start of the file.
    """
    seek_ts = target_pts
    for _ in range(_MAX_SEEK_RETRIES):
        with open_input(path) as container:
            stream = find_video_stream(container, path)
            _configure_threads(stream, threads)
            try:
                container.seek(seek_ts, stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError as err:
                log.debug("%s: seek to %d failed (%s); decoding from the start", path, seek_ts, err)
                break
            packets = container.demux(stream)
            first = next(packets, None)
            if first is None or (first.pts is None and first.dts is None):
                break
            landed = first.dts if first.dts is not None else first.pts
            frames = _decode_packets(itertools.chain([first], packets))
            head = next(frames, None)
            if head is not None and head.pts is not None and head.pts <= target_pts:
                yield head
                yield from frames
                return
            log.debug("%s: seek to %d landed after frame pts %d; stepping back", path, seek_ts, target_pts)
            if landed > seek_ts:
                break  # no keyframe at or before seek_ts in the index
            seek_ts = landed - 1
    yield from _frames_from_start(path, threads)


def _check_range(path: str, start_index: int, stop_index: int | None) -> None:
    if start_index < 0:
        raise ConfigError(f"{path}: start_index must be >= 0, got {start_index}")
    if stop_index is not None and stop_index < start_index:
        raise ConfigError(f"{path}: stop_index {stop_index} is before start_index {start_index}")


def _rgb(frame: VideoFrame, reformatter: VideoReformatter, path: str, index: int) -> np.ndarray:
    try:
        return frame_to_rgb(frame, reformatter)
    except (av.error.FFmpegError, ValueError) as err:
        raise InputError(f"{path}: cannot convert frame {index} to RGB ({ffmpeg_reason(err)})") from err


def _next_frame(source: Iterator[VideoFrame], path: str, index: int) -> VideoFrame | None:
    try:
        return next(source, None)
    except av.error.FFmpegError as err:
        raise InputError(f"{path}: decode error at frame {index} ({ffmpeg_reason(err)})") from err


def _numbered_from_keyframe(path: str, index: FrameIndex, start_index: int, threads: int) -> Iterator[tuple[int, VideoFrame]]:
    """Frames of a repaired file with their display index, from the last keyframe at or before
    ``start_index`` that a seek can find by the decoder's own pts (``seek_points``), else from the start.

    A seek is trusted only when the first frame it gives is a keyframe whose pts the index knows (a
    stream whose leading frames display before their keyframe fails that and is decoded from the start).
    """
    known = sorted((k, raw) for raw, k in index.seek_points.items() if 0 < k <= start_index)
    if known:
        keyframe, raw = known[-1]
        with open_input(path) as container:
            stream = find_video_stream(container, path)
            _configure_threads(stream, threads)
            try:
                container.seek(raw, stream=stream, backward=True, any_frame=False)
                frames = _decode_packets(container.demux(stream))
                head = next(frames, None)
            except av.error.FFmpegError as err:
                log.debug("%s: seek to keyframe %d failed (%s); counting from the start", path, keyframe, err)
                head = None
            found = index.seek_points.get(head.pts) if head is not None and head.key_frame else None
            if found is not None and found <= start_index:
                yield found, head
                yield from zip(itertools.count(found + 1), frames)
                return
            log.debug("%s: seek for frame %d did not land on a known keyframe; counting from the start", path, start_index)
    yield from enumerate(_frames_from_start(path, threads))


def _counted_frames(path: str, index: FrameIndex, start_index: int, stop_index: int, threads: int,
                    keep_source: bool) -> Iterator[DecodedFrame]:
    """Frames of a file whose timestamps were repaired: display frame k gets ``index.pts[k]``, k found by
    counting frames from a keyframe the index knows, so no decoder timestamp needs to be right."""
    source = _numbered_from_keyframe(path, index, start_index, threads)
    reformatter = VideoReformatter()
    delivered = start_index
    try:
        while delivered < stop_index:
            try:
                item = next(source, None)
            except av.error.FFmpegError as err:
                raise InputError(f"{path}: decode error at frame {delivered} ({ffmpeg_reason(err)})") from err
            if item is None:
                raise InputError(
                    f"{path}: wanted frames {start_index}..{stop_index - 1} but decoding stopped after {delivered - start_index}"
                )
            number, frame = item
            if number >= start_index:
                yield DecodedFrame(index=number, pts=index.pts[number], image=_rgb(frame, reformatter, path, number),
                                   source=frame if keep_source else None)
                delivered = number + 1
    finally:
        source.close()


def iter_frames(
    path: str,
    start_index: int = 0,
    stop_index: int | None = None,
    *,
    threads: int = 0,
    timestamps: Sequence[int] | None = None,
    index: FrameIndex | None = None,
    keep_source: bool = False,
) -> Iterator[DecodedFrame]:
    """Yield frames ``start_index`` .. ``stop_index - 1`` (display order) with exact pts.

    ``index`` (optional) is ``read_frame_index(path)`` if the caller already has it, and is read here
    if neither it nor ``timestamps`` (its ``pts``, for files whose timestamps needed no repair) is
    given. Every delivered pts is the index's: checked against the decoder's, or, where the index
    repaired them, assigned by counting frames. ``threads`` = 0 lets FFmpeg pick. ``keep_source`` keeps
    each decoded VideoFrame on its DecodedFrame (for re-encoding original frames without an RGB round trip).
    InputError on decode errors, timestamps that disagree with the index, a truncated stream, or a
    range the file does not have: exactly ``stop_index - start_index`` frames or an error.
    """
    _check_range(path, start_index, stop_index)
    if stop_index == start_index:
        return
    if index is None and timestamps is None:
        index = read_frame_index(path)
    expected: Sequence[int] = index.pts if index is not None else timestamps  # type: ignore[assignment]
    last_wanted = (stop_index if stop_index is not None else start_index + 1) - 1
    if last_wanted >= len(expected):
        raise InputError(
            f"{path}: frames {start_index}..{last_wanted} requested but the video has {len(expected)} frames"
        )
    if index is not None and index.repair is not None:
        yield from _counted_frames(path, index, start_index, stop_index or len(expected), threads, keep_source)
        return

    if start_index > 0:
        source = _frames_from(path, expected[start_index], threads)
    else:
        source = _frames_from_start(path, threads)

    reformatter = VideoReformatter()
    index_now = start_index
    prev_pts: int | None = None
    try:
        while stop_index is None or index_now < stop_index:
            frame = _next_frame(source, path, index_now)
            if frame is None:
                break
            pts = _frame_pts(frame, path, index_now)
            if pts < expected[start_index]:
                continue  # decoded from the keyframe before the wanted range
            if prev_pts is not None and pts <= prev_pts:
                raise InputError(f"{path}: frame {index_now} has pts {pts}, not after the previous frame's {prev_pts}")
            if index_now < len(expected) and pts != expected[index_now]:
                raise InputError(f"{path}: frame {index_now} has pts {pts} but the packets say {expected[index_now]}")
            yield DecodedFrame(index=index_now, pts=pts, image=_rgb(frame, reformatter, path, index_now),
                               source=frame if keep_source else None)
            prev_pts = pts
            index_now += 1
    finally:
        source.close()  # closes the container even when the caller stops early

    if stop_index is not None and index_now < stop_index:
        raise InputError(
            f"{path}: wanted frames {start_index}..{stop_index - 1} but decoding stopped after {index_now - start_index}"
        )
    if stop_index is None and index_now < len(expected):
        raise InputError(f"{path}: truncated: {len(expected)} frames in the index, decoded {index_now}")
    if index_now == start_index:
        raise InputError(f"{path}: no video frames decoded")
