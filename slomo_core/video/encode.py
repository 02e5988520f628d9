"""Encode RGB frames into a video-only file whose timestamps are exactly the pts given.

The codec and stream time base are the caller's time base (for MP4/MOV the track timescale is
forced to its denominator, otherwise the muxer would turn 1/25 into 1/12800, and so is the movie
timescale, which holds the edit lists), so a reader gets
back the same integers. Colour: given the source's ``ColourInfo`` (colour.py), the output carries its
tags and HDR metadata, RGB -> YUV uses its matrix and range (the inverse of ``decode.py``, with the
same swscale flags), and a source frame passed through as a ``VideoFrame`` keeps its YUV samples.
Without it (tools and tests that make new clips): BT.709, limited range, tagged so.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType

import av
import av.error
import av.video.stream
import numpy as np
from av.video.frame import PictureType, VideoFrame
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from slomo_core.errors import ConfigError, OutputError
from slomo_core.video.colour import ColourInfo, for_output, hdr_encoder_params, output_pix_fmt
from slomo_core.video.decode import SWS_FLAGS
from slomo_core.video.probe import ffmpeg_reason

log = logging.getLogger(__name__)

CODECS = {"h264": "libx264", "h265": "libx265", "av1": "libsvtav1", "ffv1": "ffv1"}
_CODEC_IDS = {"h264": "h264", "h265": "hevc", "av1": "av1", "ffv1": "ffv1"}  # as muxers name them

_DEFAULT_CRF = {"h264": 18, "h265": 20, "av1": 30}
_CRF_RANGE = {"h264": (0, 51), "h265": (0, 51), "av1": (0, 63)}
_X26X_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)
_DEFAULT_PRESET = {"h264": "medium", "h265": "medium", "av1": "8"}

# Output extension -> FFmpeg muxer. MP4/MOV store any integer timescale; Matroska is fixed at 1/1000 s.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_TIMESCALE_MUXERS = ("mp4", "mov")

# AVColorSpace / AVColorRange / AVColorPrimaries / AVColorTransferCharacteristic values.
_BT709 = 1
_RANGE_LIMITED = 1
_DEFAULT_RATE_HINT = Fraction(30)
_MAX_PLAUSIBLE_RATE = 1000


@dataclass(frozen=True)
class EncoderSettings:
    """How to encode: codec family, quality (CRF), speed preset, pixel format, threads.

    None means "the codec's sensible default" so manifests can store exactly what the user asked.
    """

    codec: str = "h264"
    crf: int | None = None  # None -> 18 h264, 20 h265, 30 av1; ignored for ffv1 (lossless)
    preset: str | None = None  # x264/x265 names ("medium"); av1: "0".."13" (default "8")
    pix_fmt: str | None = None  # None -> see resolve_pix_fmt
    threads: int = 0  # 0 = let the encoder decide

    def validate(self) -> None:
        """ConfigError for anything the encoder would reject later, with the option named."""
        if self.codec not in CODECS:
            raise ConfigError(f"unknown codec {self.codec!r}: choose one of {', '.join(CODECS)}")
        if self.crf is not None and self.codec in _CRF_RANGE:
            low, high = _CRF_RANGE[self.codec]
            if not isinstance(self.crf, int) or not low <= self.crf <= high:
                raise ConfigError(f"crf {self.crf!r} out of range for {self.codec}: use {low}..{high}")
        if self.preset is not None:
            if self.codec in ("h264", "h265") and self.preset not in _X26X_PRESETS:
                raise ConfigError(f"unknown {self.codec} preset {self.preset!r}: use one of {', '.join(_X26X_PRESETS)}")
            if self.codec == "av1" and self.preset not in {str(n) for n in range(14)}:
                raise ConfigError(f"av1 preset must be a number 0..13 (as text), got {self.preset!r}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads!r}")
        if self.pix_fmt is not None:
            supported = _encoder_pix_fmts(self.codec)
            if self.pix_fmt not in supported:
                choices = ", ".join(sorted(supported))
                raise ConfigError(f"pixel format {self.pix_fmt!r} not supported by {self.codec}: use one of {choices}")

    def resolved_crf(self) -> int | None:
        """The CRF actually used (None for ffv1, which is lossless)."""
        return None if self.codec == "ffv1" else (self.crf if self.crf is not None else _DEFAULT_CRF[self.codec])

    def resolved_preset(self) -> str | None:
        """The preset actually used (None for ffv1, which has none)."""
        return self.preset if self.preset is not None else _DEFAULT_PRESET.get(self.codec)

    def resolve_pix_fmt(self, width: int, height: int, source: ColourInfo | None = None) -> str:
        """The pixel format for this frame size (and source: its own format and depth, see output_pix_fmt).

        Without a source: yuv420p by default; yuv444p when a side is odd (x264/x265 4:2:0 needs even
        sizes) and for ffv1. av1 (SVT-AV1) only encodes 4:2:0 but accepts odd sizes, so it stays yuv420p.
        """
        if self.pix_fmt is not None:
            return self.pix_fmt
        if source is not None:
            return output_pix_fmt(self.codec, _encoder_pix_fmts(self.codec), source, width, height)
        if self.codec == "ffv1":
            return "yuv444p"
        if self.codec == "av1":
            return "yuv420p"
        return "yuv444p" if width % 2 or height % 2 else "yuv420p"


def _encoder_pix_fmts(codec: str) -> set[str]:
    formats = av.Codec(CODECS[codec], "w").video_formats or ()
    return {fmt.name for fmt in formats}


def _codec_options(settings: EncoderSettings, colour: ColourInfo | None = None) -> dict[str, str]:
    crf, preset = settings.resolved_crf(), settings.resolved_preset()
    hdr = hdr_encoder_params(settings.codec, colour) if colour is not None else {}
    if settings.codec == "h264":
        return {"crf": str(crf), "preset": str(preset), **hdr}
    if settings.codec == "h265":
        x265 = ":".join(["log-level=error", *hdr.values()])
        return {"crf": str(crf), "preset": str(preset), "x265-params": x265}
    if settings.codec == "av1":
        return {"crf": str(crf), "preset": str(preset), **hdr}
    return {"level": "3", "slicecrc": "1"}  # ffv1: version 3 = multithreaded slices with CRCs


def muxer_for(path: str) -> str:
    """The FFmpeg muxer for an output path, from its extension."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in CONTAINERS:
        raise ConfigError(f"{path}: unsupported output extension {ext or '(none)'!r}: use .mp4, .mov or .mkv")
    return CONTAINERS[ext]


def container_options(muxer: str, time_base: Fraction) -> dict[str, str]:
    """Muxer options so MP4/MOV store ``time_base`` ticks exactly, and the colour tags always.

    The track timescale holds the pts; the movie timescale holds edit lists, including the empty
    edit that encodes a non-zero start (default 1000 would round a 5000/30000 s start to 4980).
    ``write_colr``: without it the 'colr' box is only written when matrix, primaries and transfer are
    all tagged, and codecs without colour fields of their own (FFV1) would lose a partly tagged source's.
    """
    if muxer in _TIMESCALE_MUXERS:
        scale = str(time_base.denominator)
        return {"video_track_timescale": scale, "movie_timescale": scale, "movflags": "+write_colr"}
    return {}


def codec_tag_for(muxer: str, codec_id: str) -> str | None:
    """Tag to force: HEVC in MP4/MOV as 'hvc1' (FFmpeg's default 'hev1' does not play on Apple devices)."""
    return "hvc1" if codec_id == "hevc" and muxer in _TIMESCALE_MUXERS else None


def check_exact_pts(path: str, pts: int, time_base: Fraction, stored: Fraction) -> None:
    """OutputError if ``pts`` (in ``time_base``) would be rounded when stored in units of ``stored``.

    MP4/MOV store the caller's time base itself; Matroska counts milliseconds, which holds 25 fps
    (40 ms) but not NTSC (33.366... ms).
    """
    if (pts * time_base / stored).denominator != 1:
        raise OutputError(
            f"{path}: timestamp {pts} x {time_base} s cannot be stored exactly in units of {stored} s; "
            "use .mp4 or .mov"
        )


def _rate_hint(time_base: Fraction, hint: Fraction | None) -> Fraction:
    if hint is not None:
        if hint <= 0:
            raise ConfigError(f"frame_rate_hint must be > 0, got {hint}")
        return Fraction(hint)
    guess = 1 / time_base
    if guess <= _MAX_PLAUSIBLE_RATE:
        return guess
    log.debug("no frame_rate_hint for time base %s; telling the encoder %s fps", time_base, _DEFAULT_RATE_HINT)
    return _DEFAULT_RATE_HINT


class VideoEncoder:
    """Writes a video-only .mp4/.mov/.mkv from RGB frames with caller-given pts.

    Use as a context manager. On an exception the file is closed as far as possible but not
    deleted: the caller owns cleanup (it knows whether the path is a temporary).
    """

    def __init__(
        self,
        path: str,
        width: int,
        height: int,
        time_base: Fraction,
        settings: EncoderSettings,
        *,
        frame_rate_hint: Fraction | None = None,
        rotation: int = 0,
        colour: ColourInfo | None = None,
    ) -> None:
        settings.validate()
        if width <= 0 or height <= 0:
            raise ConfigError(f"{path}: frame size must be positive, got {width}x{height}")
        time_base = Fraction(time_base)
        if time_base <= 0:
            raise ConfigError(f"{path}: time base must be > 0, got {time_base}")
        if rotation % 90 != 0:
            raise ConfigError(f"{path}: rotation must be a multiple of 90 degrees, got {rotation}")
        muxer = muxer_for(path)

        self.path = path
        self.width = width
        self.height = height
        self.time_base = time_base
        self.settings = settings
        self.pix_fmt = settings.resolve_pix_fmt(width, height, colour)
        self.colour = for_output(colour, self.pix_fmt) if colour is not None else None
        self.frames_written = 0
        self._last_pts: int | None = None
        self._closed = False
        self._reformatter = VideoReformatter()
        self._is_rgb = av.VideoFormat(self.pix_fmt).is_rgb

        try:
            self._container = av.open(path, mode="w", format=muxer, options=container_options(muxer, time_base))
        except (av.error.FFmpegError, OSError) as err:
            raise OutputError(f"{path}: cannot create output ({ffmpeg_reason(err)})") from err
        try:
            if _CODEC_IDS[settings.codec] not in self._container.supported_codecs:
                raise ConfigError(f"{path}: {settings.codec} cannot be stored in {os.path.splitext(path)[1]}: use .mkv")
            self._stream = self._add_stream(frame_rate_hint, rotation)
            tag = codec_tag_for(muxer, _CODEC_IDS[settings.codec])
            if tag:
                self._stream.codec_tag = tag
            self._container.start_encoding()
            self._stored_time_base: Fraction = self._stream.time_base
            self._always_exact = (time_base / self._stored_time_base).denominator == 1
        except BaseException as err:
            # Nothing useful was written and the caller never gets this object: remove the file.
            self._abort()
            with contextlib.suppress(OSError):
                os.remove(path)
            if isinstance(err, av.error.FFmpegError):
                raise OutputError(f"{path}: cannot start the {settings.codec} encoder ({ffmpeg_reason(err)})") from err
            raise

    def _add_stream(self, frame_rate_hint: Fraction | None, rotation: int) -> av.video.stream.VideoStream:
        stream = self._container.add_stream(
            CODECS[self.settings.codec],
            rate=_rate_hint(self.time_base, frame_rate_hint),
            options=_codec_options(self.settings, self.colour),
        )
        stream.width = self.width
        stream.height = self.height
        stream.pix_fmt = self.pix_fmt
        stream.time_base = self.time_base
        ctx = stream.codec_context
        ctx.time_base = self.time_base
        ctx.thread_count = self.settings.threads
        if self.colour is not None:  # the source's own tags, unspecified ones included
            ctx.color_primaries = self.colour.primaries
            ctx.color_trc = self.colour.transfer
            if not self._is_rgb:
                ctx.colorspace = self.colour.matrix
                ctx.color_range = self.colour.range
        elif not self._is_rgb:
            ctx.colorspace = _BT709
            ctx.color_range = _RANGE_LIMITED
            ctx.color_primaries = _BT709
            ctx.color_trc = _BT709
        if rotation % 360:
            stream.set_display_rotation(rotation % 360)
        return stream

    def write(self, image: np.ndarray | VideoFrame, pts: int) -> None:
        """Encode one frame shown at ``pts`` (in ``time_base``, strictly increasing).

        ``image``: HxWx3 RGB, uint8 (rgb24) or uint16 (rgb48le, for sources deeper than 8 bits); or a
        decoded source frame, whose YUV samples pass through (converted only if the output's pixel
        format differs, with the source's matrix and range, never through RGB).
        """
        if self._closed:
            raise OutputError(f"{self.path}: write after close")
        pts = int(pts)
        if self._last_pts is not None and pts <= self._last_pts:
            raise OutputError(f"{self.path}: frame pts {pts} is not after the previous frame's {self._last_pts}")
        if not self._always_exact:
            check_exact_pts(self.path, pts, self.time_base, self._stored_time_base)
        frame = self._source_frame(image) if isinstance(image, VideoFrame) else self._rgb_frame(image)
        frame.pts = pts
        frame.time_base = self.time_base
        try:
            self._container.mux(self._stream.encode(frame))
        except av.error.FFmpegError as err:
            raise OutputError(f"{self.path}: cannot encode frame {self.frames_written} ({ffmpeg_reason(err)})") from err
        self._last_pts = pts
        self.frames_written += 1

    def _rgb_frame(self, image: np.ndarray) -> VideoFrame:
        rgb_format = {np.dtype(np.uint8): "rgb24", np.dtype(np.uint16): "rgb48le"}.get(image.dtype)
        if image.shape != (self.height, self.width, 3) or rgb_format is None:
            raise ValueError(
                f"{self.path}: expected a {self.height}x{self.width}x3 uint8 or uint16 image, "
                f"got {image.shape} {image.dtype}"
            )
        frame = VideoFrame.from_ndarray(np.ascontiguousarray(image), format=rgb_format)
        if self._is_rgb:
            return self._reformatter.reformat(frame, format=self.pix_fmt, interpolation=SWS_FLAGS)
        if self.colour is None:
            matrix, colour_range = Colorspace.ITU709, ColorRange.MPEG
        else:
            matrix, colour_range = self.colour.sws_matrix, ColorRange(self.colour.effective_range)
        return self._reformatter.reformat(
            frame, format=self.pix_fmt, dst_colorspace=matrix, dst_color_range=colour_range, interpolation=SWS_FLAGS
        )

    def _source_frame(self, frame: VideoFrame) -> VideoFrame:
        if (frame.width, frame.height) != (self.width, self.height):
            raise ValueError(f"{self.path}: expected a {self.width}x{self.height} frame, got {frame.width}x{frame.height}")
        if frame.format.name != self.pix_fmt:
            colour = self.colour
            matrix = colour.sws_matrix if colour is not None else None
            colour_range = ColorRange(colour.effective_range) if colour is not None else None
            frame = self._reformatter.reformat(
                frame, format=self.pix_fmt, src_colorspace=matrix, dst_colorspace=matrix,
                src_color_range=colour_range, dst_color_range=colour_range, interpolation=SWS_FLAGS,
            )
        frame.pict_type = PictureType.NONE  # the source's frame types are not the encoder's to copy
        return frame

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        except av.error.FFmpegError as err:
            self._abort()
            raise OutputError(f"{self.path}: cannot finish the file ({ffmpeg_reason(err)})") from err
        except BaseException:
            self._abort()
            raise

    def _abort(self) -> None:
        """Close without flushing, after a failure; never raises."""
        self._closed = True
        try:
            self._container.close()
        except Exception as err:  # noqa: BLE001 - cleanup must not mask the original error
            log.debug("%s: error while closing after a failure: %s", self.path, err)

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()
