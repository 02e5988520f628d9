"""Training triplets from real video: frames i, i+j, i+n of a clip give (I0, It, I1) with t = j / n.

Crops are random (optionally kept outside a region, so a clip whose centre is a benchmark crop can still
give training data from its borders), flipped at random and played backwards at random (t -> 1 - t).
Triplets that span a scene cut are never drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slomo_core.errors import ConfigError
from slomo_core.scene import SceneCutDetector
from slomo_core.video.decode import iter_frames


@dataclass(frozen=True)
class Region:
    """A pixel box ``[x0, x1) x [y0, y1)``."""

    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def parse(cls, text: str) -> Region:
        try:
            x0, y0, x1, y1 = (int(v) for v in text.split(","))
        except ValueError:
            raise ConfigError(f"bad region {text!r}: expected x0,y0,x1,y1") from None
        if x1 <= x0 or y1 <= y0:
            raise ConfigError(f"bad region {text!r}: empty box")
        return cls(x0, y0, x1, y1)

    def overlaps(self, x: int, y: int, size: int) -> bool:
        return x < self.x1 and x + size > self.x0 and y < self.y1 and y + size > self.y0


@dataclass
class VideoClip:
    """Decoded frames of one clip and the indices ``k`` where a cut lies between frames k-1 and k."""

    name: str
    frames: list[np.ndarray]
    cuts: frozenset[int]
    exclude: Region | None = None


def load_clip(path: str, exclude: Region | None = None, max_frames: int | None = None) -> VideoClip:
    frames = [frame.image for frame in iter_frames(path, 0, max_frames)]
    if len(frames) < 3:
        raise ConfigError(f"{path}: needs at least 3 frames to give training triplets, has {len(frames)}")
    detector = SceneCutDetector()
    cuts = frozenset(k for k in range(1, len(frames)) if detector.is_cut(frames[k - 1], frames[k]))
    return VideoClip(path, frames, cuts, exclude)


def _crop_origin(rng: np.random.Generator, clip: VideoClip, size: int) -> tuple[int, int]:
    h, w = clip.frames[0].shape[:2]
    if h < size or w < size:
        raise ConfigError(f"{clip.name}: frames {w}x{h} are smaller than the {size}px crop")
    for _ in range(1000):
        x, y = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
        if clip.exclude is None or not clip.exclude.overlaps(x, y, size):
            return x, y
    raise ConfigError(f"{clip.name}: no {size}px crop fits outside the excluded region")


def video_triplet(rng: np.random.Generator, clips: Sequence[VideoClip], size: int, max_span: int = 8
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(I0, It, I1, t) from a random clip, span n in [2, max_span], not crossing a cut."""
    for _ in range(1000):
        clip = clips[int(rng.integers(len(clips)))]
        span = int(rng.integers(2, min(max_span, len(clip.frames) - 1) + 1))
        start = int(rng.integers(0, len(clip.frames) - span))
        if any(start < k <= start + span for k in clip.cuts):
            continue
        middle = int(rng.integers(1, span))
        x, y = _crop_origin(rng, clip, size)
        picks = [clip.frames[i][y : y + size, x : x + size] for i in (start, start + middle, start + span)]
        t = middle / span
        if rng.random() < 0.5:
            picks = [p[:, ::-1] for p in picks]
        if rng.random() < 0.5:
            picks = [p[::-1] for p in picks]
        if rng.random() < 0.5:
            picks, t = picks[::-1], 1.0 - t
        frame0, frame_t, frame1 = (np.ascontiguousarray(p) for p in picks)
        return frame0, frame_t, frame1, t
    raise ConfigError("no cut-free triplet found in the training clips")
