"""Encode RGB frames into a video-only file whose timestamps are exactly the pts given.

The codec and stream time base are the caller's time base (for MP4/MOV the track timescale is
forced to its denominator, otherwise the muxer would turn 1/25 into 1/12800, and so is the movie
timescale, which holds the edit lists), so a reader gets
back the same integers. Colour: given the source's ``ColourInfo`` (colour.py), the output carries its
tags and HDR metadata, RGB -> YUV uses its matrix and range (the inverse of ``decode.py``, with the
same swscale flags), and a source frame passed through as a ``VideoFrame`` keeps its YUV samples.
Without it (tools and tests that make new clips): BT.709, limited range, tagged so.

Matroska's clock is fixed at 1 ms: there each pts is rounded to the nearest tick, as FFmpeg does.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from collections.abc import Sequence
from fractions import Fraction
from types import TracebackType

import av
import av.container
import av.error
import av.video.stream
import numpy as np
from av.video.frame import PictureType, VideoFrame
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from slomo_core.errors import ConfigError, OutputError
from slomo_core.video.choices import CODECS, EncoderSettings
from slomo_core.video.colour import ColourInfo, for_output, hdr_encoder_params
from slomo_core.video.decode import SWS_FLAGS
from slomo_core.video.probe import ffmpeg_reason

log = logging.getLogger(__name__)

_CODEC_IDS = {"h264": "h264", "h265": "hevc", "av1": "av1", "ffv1": "ffv1"}  # as muxers name them

# Output extension -> FFmpeg muxer. MP4/MOV store any integer timescale; Matroska's clock is fixed at 1 ms.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_TIMESCALE_MUXERS = ("mp4", "mov")
FIXED_CLOCKS = {"matroska": Fraction(1, 1000)}

# AVColorSpace / AVColorRange / AVColorPrimaries / AVColorTransferCharacteristic values.
_BT709 = 1
_FIELD_PROGRESSIVE = 1  # AVFieldOrder AV_FIELD_PROGRESSIVE
_RANGE_LIMITED = 1
_DEFAULT_RATE_HINT = Fraction(30)
_MAX_PLAUSIBLE_RATE = 1000


def encoder_pix_fmts(codec: str) -> set[str]:
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


def check_codec_fits(path: str, codec: str, container: av.container.OutputContainer | None = None) -> None:
    """ConfigError when the output's container cannot hold ``codec`` (checked before any work).

    FFV1 goes in .mkv (and .mp4); FFmpeg's MOV muxer can take it only as an experimental feature, and
    PyAV's ``add_stream``/``add_stream_from_template`` refuse every codec the muxer does not list.
    """
    muxer = muxer_for(path)
    if container is None:
        with av.open(io.BytesIO(), mode="w", format=muxer) as probe_container:
            supported = probe_container.supported_codecs
    else:
        supported = container.supported_codecs
    if _CODEC_IDS[codec] not in supported:
        raise ConfigError(f"{path}: {codec} cannot be stored in {os.path.splitext(path)[1]}: use .mkv")


def container_clock(muxer: str, time_base: Fraction) -> Fraction:
    """The unit ``muxer`` stores timestamps in: the caller's time base for MP4/MOV, 1 ms for Matroska."""
    return FIXED_CLOCKS.get(muxer, Fraction(time_base))


def round_to_clock(pts: int, time_base: Fraction, clock: Fraction) -> int:
    """``pts`` (in ``time_base``) in whole ``clock`` ticks, to the nearest, halves away from zero.

    FFmpeg's muxers round this way (``av_rescale_q_rnd`` with AV_ROUND_NEAR_INF), so this is what a
    .mkv stores; slomo's checks use it to know the stored value before writing.
    """
    exact = Fraction(pts) * Fraction(time_base) / Fraction(clock)
    ticks = math.floor(abs(exact) + Fraction(1, 2))
    return ticks if exact >= 0 else -ticks


def check_clock_resolution(path: str, pts: Sequence[int], time_base: Fraction, clock: Fraction) -> None:
    """OutputError if two frames are less than one ``clock`` tick apart (they could share a stored tick).

    Matroska's 1 ms clock holds any rate up to 1000 frames/s: timestamps are rounded, at most half a
    tick, and stay in order.
    """
    ordered = sorted(int(p) for p in pts)
    for a, b in zip(ordered, ordered[1:]):
        gap = (b - a) * Fraction(time_base)
        if gap < clock:
            raise OutputError(
                f"{path}: frames {float(gap) * 1000:.3f} ms apart do not fit the container's {clock} s clock; "
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


def _keep_pixel_shape(
    stream: av.video.stream.VideoStream, sample_aspect_ratio: Fraction | None, progressive: bool
) -> None:
    """The source's non-square pixels and its progressive flag, in the bitstream and the container."""
    if sample_aspect_ratio:
        stream.codec_context.sample_aspect_ratio = Fraction(sample_aspect_ratio)
    if progressive:
        stream.codec_context.field_order = _FIELD_PROGRESSIVE


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
        sample_aspect_ratio: Fraction | None = None,
        progressive: bool = False,
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
            check_codec_fits(path, settings.codec, self._container)
            self._stream = self._add_stream(frame_rate_hint, rotation)
            _keep_pixel_shape(self._stream, sample_aspect_ratio, progressive)
            tag = codec_tag_for(muxer, _CODEC_IDS[settings.codec])
            if tag:
                self._stream.codec_tag = tag
            self._container.start_encoding()
            self._stored_time_base: Fraction = self._stream.time_base
            self._always_exact = (time_base / self._stored_time_base).denominator == 1
            self._last_tick: int | None = None
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
        if not self._always_exact:  # Matroska: the muxer rounds to its clock; rounded frames must not collide
            tick = round_to_clock(pts, self.time_base, self._stored_time_base)
            if self._last_pts is not None and self._last_tick is not None and tick <= self._last_tick:
                check_clock_resolution(self.path, [self._last_pts, pts], self.time_base, self._stored_time_base)
            self._last_tick = tick
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
