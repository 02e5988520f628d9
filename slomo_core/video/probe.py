"""What a video file declares (size, codec, time base, rotation, audio) and the exact pts of its frames.

Planning needs the presentation timestamp of every frame before anything is decoded, so
``read_frame_timestamps`` demuxes packets only. ``open_input`` and ``find_video_stream`` are shared
with decode/mux so every module reports unreadable files the same way.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import IO

import av
import av.container
import av.error
import av.stream
import av.video.stream

from slomo_core.errors import InputError
from slomo_core.video.colour import ColourInfo, colour_of_frame
from slomo_core.video.pts_repair import (
    SparseStream,
    TimestampRepair,
    frame_step,
    pts_need_decoding,
    repair_timestamps,
    sparse_or_truncated,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioInfo:
    """The first audio stream, enough to decide how to carry it to the output."""

    codec: str
    sample_rate: int
    channels: int
    time_base: Fraction
    language: str | None = None


@dataclass(frozen=True)
class SubtitleInfo:
    """A subtitle stream: its codec (text such as mov_text/subrip/ass, or bitmaps) and language tag."""

    codec: str
    language: str | None


# AVFieldOrder values, as FFmpeg's ffprobe names them; the last four are interlaced.
FIELD_ORDERS = {0: "unknown", 1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
INTERLACED = ("tt", "bb", "tb", "bt")
_FIELD_WORDS = {"tt": "top field first", "bb": "bottom field first", "tb": "top field coded first, bottom shown first",
                "bt": "bottom field coded first, top shown first"}
# Global tags that muxers write themselves: a remux makes its own, copying the source's would lie.
MUXER_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder", "duration"})


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
    sample_aspect_ratio: Fraction | None = None  # None: square pixels or not declared
    field_order: str = "unknown"  # a FIELD_ORDERS name; interlaced sources are refused (check_progressive)
    subtitles: tuple[SubtitleInfo, ...] = ()
    chapters: int = 0
    metadata: dict[str, str] = field(default_factory=dict)  # global tags (title, creation_time...), muxer's own left out
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
            language=stream.metadata.get("language"),
        )
    return None


def source_metadata(container: av.container.InputContainer) -> dict[str, str]:
    """The global tags worth keeping (title, creation_time, comment...), without those a muxer writes itself."""
    return {key: value for key, value in container.metadata.items() if key.lower() not in MUXER_TAGS}


def _subtitle_infos(container: av.container.InputContainer) -> tuple[SubtitleInfo, ...]:
    return tuple(SubtitleInfo(stream.codec_context.codec.canonical_name if stream.codec_context else "unknown",
                              stream.metadata.get("language"))
                 for stream in container.streams.subtitles)


def _sample_aspect_ratio(stream: av.video.stream.VideoStream) -> Fraction | None:
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    return Fraction(sar) if sar and sar != 1 else None


def check_progressive(info: VideoInfo, name: str | None = None) -> None:
    """InputError for a source flagged interlaced: interpolating between fields' frames would mix two times.

    ``name`` is how the user calls the source (its URL when ``info`` describes a local copy).
    """
    if info.field_order in INTERLACED:
        raise InputError(
            f"{name or info.path}: interlaced video ({_FIELD_WORDS[info.field_order]}) is not supported; "
            "deinterlace it first (for example ffmpeg -vf bwdif)"
        )


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
            sample_aspect_ratio=_sample_aspect_ratio(stream),
            field_order=FIELD_ORDERS.get(int(ctx.field_order), "unknown"),
            subtitles=_subtitle_infos(container),
            chapters=len(container.chapters()),
            metadata=source_metadata(container),
        )
        first = _first_frame(container, stream, path)
    if info.width <= 0 or info.height <= 0:
        raise InputError(f"{path}: video stream has no frame size")
    return replace(info, rotation=normalize_rotation(first.rotation), colour=colour_of_frame(first))


@dataclass(frozen=True)
class FrameIndex:
    """Every frame's pts in display order, and which display indices are keyframes (seek points).

    ``repair`` is set when the file's own timestamps were unusable (see pts_repair.py): then display
    frame k has ``pts[k]`` whatever the decoder says, and frames are found by counting. ``seek_points``
    (repaired files only) maps the pts the decoder shows on a keyframe to its display index, where that
    pts is unique: a chunk seeks there and counts on instead of counting from the start of the file.
    ``sparse`` is set when the stream holds fewer frames than declared slots but reaches its end.
    """

    pts: list[int]
    keyframes: list[int]
    repair: TimestampRepair | None = None
    sparse: SparseStream | None = None
    seek_points: dict[int, int] = field(default_factory=dict)

    @property
    def notes(self) -> list[str]:
        """One line per thing a user should know about these timestamps (probe prints, convert warns)."""
        return [fact.describe() for fact in (self.repair, self.sparse) if fact is not None]


def read_frame_timestamps(path: str) -> list[int]:
    """Presentation timestamps of every video frame, in display order, without decoding pixels."""
    return read_frame_index(path).pts


def _decoded_frame_timestamps(path: str) -> tuple[list[int | None], list[int]]:
    """The pts the decoder shows, in display order, and the keyframes' display indices (no RGB)."""
    shown: list[int | None] = []
    keyframes: list[int] = []
    with open_input(path) as container:
        stream = find_video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if frame.key_frame:
                    keyframes.append(len(shown))
                shown.append(frame.pts)
        except av.error.FFmpegError as err:
            raise InputError(f"{path}: decode error at frame {len(shown)} ({ffmpeg_reason(err)})") from err
    if not shown:
        raise InputError(f"{path}: video stream has no decodable frames")
    return shown, keyframes or [0]


def read_frame_index(path: str) -> FrameIndex:
    """Timestamps and keyframes of every video frame, in display order, without decoding pixels.

    Packets flagged "discard" (outside an MP4 edit list) are skipped, so the list matches the
    frames a decoder and a player show. Timestamps are in the stream time base and already include
    the container's edit-list shift (a B-frame MP4 written from pts 0 reads back from pts 0).
    Packets whose pts are missing, repeated or not display times (pts_need_decoding) are decoded
    once and their timestamps repaired (pts_repair.py). InputError on a stream shorter than the
    frame count the container declares (truncated file); a sparse one only says so in ``sparse``.
    """
    with open_input(path) as container:
        stream = find_video_stream(container, path)
        packet_pts: list[int | None] = []
        packet_dts: list[int | None] = []
        key_pts: set[int] = set()
        discarded = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0 and packet.pts is None and packet.dts is None:
                    continue  # the empty packet PyAV yields at EOF to flush decoders
                if packet.is_discard:
                    discarded += 1
                    continue
                if packet.is_corrupt:
                    log.warning("%s: video packet %d is flagged corrupt", path, len(packet_pts))
                if packet.is_keyframe and packet.pts is not None:
                    key_pts.add(packet.pts)
                packet_pts.append(packet.pts)
                packet_dts.append(packet.dts)
        except av.error.FFmpegError as err:
            raise InputError(
                f"{path}: cannot read video packet {len(packet_pts)} ({ffmpeg_reason(err)})"
            ) from err
        declared = stream.frames
        # AVI stores no presentation times: FFmpeg makes them up from the packet order. MP4, MKV and TS
        # store them, so only AVI's are suspect when the codec reorders (and only AVI pays a decode pass).
        reorders = container.format.name == "avi" and bool(stream.codec_context.has_b_frames)
        step = frame_step(stream.time_base, stream.guessed_rate or stream.average_rate)  # AVI: average = slot rate
        duration, start = stream.duration, stream.start_time or 0
    if not packet_pts:
        raise InputError(f"{path}: video stream has no frames")
    suspect = pts_need_decoding(packet_pts, reorders)
    repair, seek_points = None, {}
    if suspect is None:
        timestamps = sorted(packet_pts)  # type: ignore[type-var]
        keyframes = [i for i, ts in enumerate(timestamps) if ts in key_pts]
    else:
        shown, keyframes = _decoded_frame_timestamps(path)
        timestamps, repair = repair_timestamps(shown, packet_dts, step, suspect)
        seen = Counter(shown)
        seek_points = {shown[k]: k for k in keyframes if shown[k] is not None and seen[shown[k]] == 1}
    judged = sparse_or_truncated(timestamps, len(timestamps) + discarded, declared, step, duration, start)
    if isinstance(judged, str):
        raise InputError(f"{path}: {judged}")
    return FrameIndex(timestamps, keyframes, repair, judged, seek_points)


def check_convertible(path: str) -> tuple[VideoInfo, FrameIndex]:
    """The one decision whether a local file can be converted: ``slomo probe``, the preflight and the
    planner all call this, so they never disagree. The first frame decodes (``probe``), every frame has
    a usable timestamp (repaired if need be) and there are at least two frames to interpolate between."""
    info = probe(path)
    check_progressive(info)
    index = read_frame_index(path)
    if len(index.pts) < 2:
        raise InputError(f"{path}: has {len(index.pts)} video frame(s); interpolation needs at least 2")
    return info, index


def check_first_frame(source: str | IO[bytes], name: str) -> None:
    """InputError (one line) unless the first video frame decodes; reads only the file's head.

    ``source`` is a local path or an open binary file (an fsspec file for object storage), so a
    remote source is checked in a second or two, before any cluster work starts.
    """
    try:
        container = av.open(source, mode="r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise InputError(f"{name}: not a readable media file ({ffmpeg_reason(err)})") from err
    with container:
        _first_frame(container, find_video_stream(container, name), name)
