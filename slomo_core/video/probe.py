"""What a video file declares (size, codec, time base, rotation, audio) and the exact pts of its frames.

Planning needs the presentation timestamp of every frame before anything is decoded, so
``read_frame_timestamps`` demuxes packets only. ``open_input`` and ``find_video_stream`` are shared
with decode/mux so every module reports unreadable files the same way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from fractions import Fraction

import av
import av.container
import av.error
import av.stream
import av.video.stream

from slomo_core.errors import InputError
from slomo_core.video.colour import ColourInfo, colour_of_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioInfo:
    """The first audio stream, enough to decide how to carry it to the output."""

    codec: str
    sample_rate: int
    channels: int
    time_base: Fraction


@dataclass(frozen=True)
class VideoInfo:
    """What the container declares about the first video stream.

    ``width``/``height`` are the stored (unrotated) size. ``rotation`` is the display rotation in
    degrees counter-clockwise, normalised to 0/90/180/270, with PyAV's sign convention
    (``VideoFrame.rotation``; what ``VideoStream.set_display_rotation`` writes back).
    ``frame_count`` and ``duration_seconds`` are declarations and may be None or wrong; the
    frame timestamps from ``read_frame_timestamps`` are the truth.
    """

    path: str
    container: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    average_rate: Fraction | None
    frame_count: int | None
    duration_seconds: float | None
    rotation: int
    audio: AudioInfo | None
    size_bytes: int
    colour: ColourInfo | None = None  # from the first decoded frame: tags, depth, HDR metadata


def ffmpeg_reason(err: BaseException) -> str:
    """A short one-line reason from an FFmpeg/OS error, for user-facing messages."""
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(reason).split())


def check_input_file(path: str) -> int:
    """Fail early, with a clear message, on paths FFmpeg would report cryptically; return the size."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a video file")
    size = os.path.getsize(path)
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    return size


def open_input(path: str) -> av.container.InputContainer:
    """Open ``path`` for reading, turning every failure into a one-line InputError."""
    check_input_file(path)
    try:
        return av.open(path, mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable media file ({ffmpeg_reason(err)})") from err


def find_video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    """The first real video stream (cover art / attached pictures are not video)."""
    for stream in container.streams.video:
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        if stream.codec_context is None:
            raise InputError(f"{path}: no decoder for video codec of stream #{stream.index}")
        return stream
    raise InputError(f"{path}: no video stream (audio-only or not a video file)")


def normalize_rotation(degrees: float) -> int:
    """Snap a display-matrix angle to 0/90/180/270 (matrices store e.g. -90 or 89.99)."""
    return int(round(float(degrees) / 90.0)) * 90 % 360


def _first_frame(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: str
) -> av.VideoFrame:
    # PyAV 18 exposes the display matrix on decoded frames (FFmpeg copies the stream's coded side
    # data onto each frame) but not on streams, so decode one frame. This also proves the file
    # has at least one decodable frame.
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as err:
        raise InputError(f"{path}: cannot decode the first video frame ({ffmpeg_reason(err)})") from err
    raise InputError(f"{path}: video stream has no decodable frames")


def _audio_info(container: av.container.InputContainer) -> AudioInfo | None:
    for stream in container.streams.audio:
        ctx = stream.codec_context
        if ctx is None:
            log.warning("%s: audio stream #%d has no decoder; ignoring it", container.name, stream.index)
            continue
        return AudioInfo(
            codec=ctx.name,
            sample_rate=int(ctx.sample_rate or stream.sample_rate or 0),
            channels=int(ctx.channels or 0),
            time_base=stream.time_base or Fraction(1, int(ctx.sample_rate or 1)),
        )
    return None


def probe(path: str) -> VideoInfo:
    """Describe ``path``'s first video stream (and first audio stream); InputError if unusable."""
    size = check_input_file(path)
    with open_input(path) as container:
        stream = find_video_stream(container, path)
        ctx = stream.codec_context
        time_base = stream.time_base
        if not time_base:
            raise InputError(f"{path}: video stream has no time base")
        if stream.duration:
            duration: float | None = float(stream.duration * time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = None
        info = VideoInfo(
            path=path,
            container=container.format.name,
            codec=ctx.name,
            width=int(ctx.width),
            height=int(ctx.height),
            pix_fmt=ctx.pix_fmt or "",
            time_base=time_base,
            average_rate=stream.average_rate or None,
            frame_count=stream.frames if stream.frames > 0 else None,
            duration_seconds=duration,
            rotation=0,
            audio=_audio_info(container),
            size_bytes=size,
        )
        first = _first_frame(container, stream, path)
    if info.width <= 0 or info.height <= 0:
        raise InputError(f"{path}: video stream has no frame size")
    return replace(info, rotation=normalize_rotation(first.rotation), colour=colour_of_frame(first))


@dataclass(frozen=True)
class FrameIndex:
    """Every frame's pts in display order, and which display indices are keyframes (seek points)."""

    pts: list[int]
    keyframes: list[int]


def read_frame_timestamps(path: str) -> list[int]:
    """Presentation timestamps of every video frame, in display order, without decoding pixels."""
    return read_frame_index(path).pts


def read_frame_index(path: str) -> FrameIndex:
    """Timestamps and keyframes of every video frame, in display order, without decoding pixels.

    Packets flagged "discard" (outside an MP4 edit list) are skipped, so the list matches the
    frames a decoder and a player show. Timestamps are in the stream time base and already include
    the container's edit-list shift (a B-frame MP4 written from pts 0 reads back from pts 0).
    InputError on packets without timestamps, duplicate timestamps, or a stream shorter than the
    frame count the container declares (truncated file).
    """
    with open_input(path) as container:
        stream = find_video_stream(container, path)
        timestamps: list[int] = []
        key_pts: set[int] = set()
        discarded = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0 and packet.pts is None and packet.dts is None:
                    continue  # the empty packet PyAV yields at EOF to flush decoders
                if packet.is_discard:
                    discarded += 1
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    raise InputError(f"{path}: video packet {len(timestamps)} has no pts and no dts")
                if packet.is_corrupt:
                    log.warning("%s: video packet at pts %d is flagged corrupt", path, ts)
                if packet.is_keyframe:
                    key_pts.add(ts)
                timestamps.append(ts)
        except av.error.FFmpegError as err:
            raise InputError(
                f"{path}: cannot read video packet {len(timestamps)} ({ffmpeg_reason(err)})"
            ) from err
        declared = stream.frames
    if not timestamps:
        raise InputError(f"{path}: video stream has no frames")
    timestamps.sort()
    for prev, cur in zip(timestamps, timestamps[1:]):
        if cur == prev:
            raise InputError(f"{path}: two video frames share the timestamp {cur}")
    if declared > 0 and len(timestamps) + discarded < declared:
        raise InputError(f"{path}: truncated: declared {declared} frames, found {len(timestamps) + discarded}")
    keyframes = [i for i, ts in enumerate(timestamps) if ts in key_pts]
    return FrameIndex(timestamps, keyframes)
