"""Synthesize tiny test clips with PyAV, independently of slomo_core's encoder.

Use these to build inputs with exactly the properties a test needs (VFR pts, B-frames, small GOPs,
rotation, audio, odd sizes) in milliseconds. Frames are HxWx3 uint8 RGB; timestamps are integers in
the given time base and come back unchanged from .mp4/.mov (the track timescale is forced to the
time base's denominator, and so is the movie timescale for edit lists). Nothing here is part of the product.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np

_MUXERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".m4a": "mp4", ".wav": "wav"}


def moving_square_frames(
    n: int, w: int, h: int, dx: int = 2, dy: int = 1, *, size: int | None = None, seed: int = 0
) -> list[np.ndarray]:
    """``n`` RGB frames of a white square moving by (dx, dy) pixels per frame over a fixed textured
    background (a smooth gradient plus seeded noise, so codecs and optical flow have detail)."""
    size = size or max(4, min(w, h) // 4)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack(
        [xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) * 255 // max(w + h - 2, 1)], axis=-1
    ).astype(np.int16)
    background += rng.integers(-12, 13, size=(h, w, 3), dtype=np.int16)
    background = np.clip(background, 0, 255).astype(np.uint8)
    frames = []
    for i in range(n):
        img = background.copy()
        x0 = (i * dx) % max(w - size, 1)
        y0 = (i * dy) % max(h - size, 1)
        img[y0 : y0 + size, x0 : x0 + size] = 255
        frames.append(img)
    return frames


def cfr_pts(n: int, step: int = 1, start: int = 0) -> list[int]:
    """``n`` constant-rate timestamps: start, start+step, ..."""
    return [start + i * step for i in range(n)]


def _muxer(path: str) -> str:
    ext = path[path.rfind(".") :].lower()
    return _MUXERS[ext]


def _sine_frames(
    seconds: float, sample_rate: int, layout: str, frame_size: int, freq: float = 440.0
) -> list[av.AudioFrame]:
    channels = 2 if layout == "stereo" else 1
    total = int(round(seconds * sample_rate))
    t = np.arange(total) / sample_rate
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    frames = []
    for start in range(0, total, frame_size):
        chunk = wave[start : start + frame_size]
        planar = np.ascontiguousarray(np.repeat(chunk[None, :], channels, axis=0))
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        frames.append(frame)
    return frames


def _add_audio_stream(container: av.container.OutputContainer, codec: str, sample_rate: int, layout: str):
    stream = container.add_stream(codec, rate=sample_rate, layout=layout)
    stream.codec_context.time_base = Fraction(1, sample_rate)
    return stream


def make_clip(
    path: str,
    frames: Sequence[np.ndarray],
    pts: Sequence[int],
    time_base: Fraction,
    codec: str = "libx264",
    *,
    audio: bool = False,
    audio_seconds: float | None = None,
    audio_codec: str = "aac",
    sample_rate: int = 48000,
    rotation: int = 0,
    bframes: bool = True,
    gop_size: int | None = None,
    pix_fmt: str | None = None,
    frame_rate: Fraction | None = None,
    faststart: bool = False,
    options: dict[str, str] | None = None,
) -> str:
    """Write ``frames`` shown at ``pts`` (in ``time_base``) to ``path`` and return ``path``.

    ``codec`` is an FFmpeg encoder name (libx264, libx265, libsvtav1, ffv1, mpeg4...). ``bframes``
    toggles B-frames for x264/x265 (3 when on). ``gop_size`` sets the keyframe interval (closed
    GOPs for x264). ``audio`` adds a 440 Hz stereo sine lasting ``audio_seconds`` (default: the
    video duration, last pts + one step). ``rotation`` writes a display matrix (counter-clockwise
    degrees, PyAV convention). ``faststart`` moves the MP4 index to the front. ``options``
    go to the encoder verbatim (they win over the defaults above). ``audio_codec`` is any FFmpeg
    audio encoder the container takes (aac, libopus, flac, pcm_s16le in .mkv...). ``frame_rate``
    is the rate hint given to the encoder (default: one over the smallest pts step).
    In .mp4/.mov the pts come back unchanged; .mkv stores milliseconds (1/25 -> multiples of 40).
    """
    if len(frames) != len(pts) or not frames:
        raise ValueError("need one pts per frame and at least one frame")
    h, w = frames[0].shape[:2]
    muxer = _muxer(path)
    container_opts: dict[str, str] = {}
    if muxer in ("mp4", "mov"):
        container_opts["video_track_timescale"] = str(time_base.denominator)
        container_opts["movie_timescale"] = str(time_base.denominator)  # exact edit lists
        if faststart:
            container_opts["movflags"] = "+faststart"
    steps = [b - a for a, b in zip(pts, pts[1:])] or [max(1, int(round(1 / (25 * time_base))))]
    rate = frame_rate if frame_rate is not None else 1 / (time_base * min(steps))
    if rate > 1000:
        rate = Fraction(30)
    if pix_fmt is None:
        pix_fmt = "yuv444p" if codec == "ffv1" or w % 2 or h % 2 else "yuv420p"

    enc_opts: dict[str, str] = dict(options or {})
    if codec == "libx264":
        enc_opts.setdefault("preset", "veryfast")
        enc_opts.setdefault("bf", "3" if bframes else "0")
        if gop_size:
            enc_opts.setdefault("x264-params", f"keyint={gop_size}:min-keyint={gop_size}:scenecut=0")
    elif codec == "libx265":
        params = "log-level=error" + ("" if bframes else ":bframes=0")
        if gop_size:
            params += f":keyint={gop_size}:min-keyint={gop_size}:scenecut=0"
        enc_opts.setdefault("x265-params", params)
        enc_opts.setdefault("preset", "ultrafast")
    elif codec == "libsvtav1":
        enc_opts.setdefault("preset", "12")

    with av.open(path, mode="w", format=muxer, options=container_opts) as container:
        vstream = container.add_stream(codec, rate=rate, options=enc_opts)
        vstream.width, vstream.height, vstream.pix_fmt = w, h, pix_fmt
        vstream.time_base = time_base
        vstream.codec_context.time_base = time_base
        if gop_size:
            vstream.codec_context.gop_size = gop_size
        if rotation:
            vstream.set_display_rotation(rotation)
        astream = _add_audio_stream(container, audio_codec, sample_rate, "stereo") if audio else None

        for img, p in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format=pix_fmt)
            frame.pts = int(p)
            frame.time_base = time_base
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))

        if astream is not None:
            seconds = audio_seconds
            if seconds is None:
                seconds = float((pts[-1] - pts[0] + steps[-1]) * time_base)
            frame_size = astream.codec_context.frame_size or 1024
            for frame in _sine_frames(seconds, sample_rate, "stereo", frame_size):
                container.mux(astream.encode(frame))
            container.mux(astream.encode(None))
    return path


def make_audio_only(path: str, seconds: float = 1.0, codec: str = "aac", sample_rate: int = 48000) -> str:
    """An audio-only file (.m4a/.mp4 with AAC, .wav with pcm_s16le): a sine of ``seconds``."""
    muxer = _muxer(path)
    with av.open(path, mode="w", format=muxer) as container:
        stream = _add_audio_stream(container, codec, sample_rate, "stereo")
        frame_size = stream.codec_context.frame_size or 1024
        for frame in _sine_frames(seconds, sample_rate, "stereo", frame_size):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def truncate_file(src: str, dst: str, fraction: float = 0.5) -> str:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst`` (a cut download / full disk)."""
    with open(src, "rb") as fh:
        data = fh.read()
    with open(dst, "wb") as fh:
        fh.write(data[: int(len(data) * fraction)])
    return dst
