"""The interface every interpolator implements, so the pipeline never cares which model runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from slomo_core.errors import InputError


@dataclass(frozen=True)
class PairRequest:
    """Intermediate frames wanted between two consecutive frames.

    Frames are HxWx3 RGB arrays of the same size and dtype: uint8, or uint16 (full 16-bit scale) for
    sources deeper than 8 bits; ``times`` are floats strictly inside (0, 1).
    """

    frame0: np.ndarray
    frame1: np.ndarray
    times: tuple[float, ...]


class FrameInterpolator(Protocol):
    """Produces, for each request, one HxWx3 RGB frame (of the request's dtype) per requested time, in order."""

    name: str

    def interpolate(self, requests: Sequence[PairRequest]) -> list[list[np.ndarray]]: ...


RGB_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def check_frame_pair(frame0: np.ndarray, frame1: np.ndarray) -> None:
    """Both frames HxWx3 uint8 or uint16 RGB of one size and dtype, or an InputError saying what they are."""
    for frame in (frame0, frame1):
        if frame.dtype not in RGB_DTYPES or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"frames must be HxWx3 uint8 or uint16 RGB, got {frame.dtype} {frame.shape}")
    if frame0.shape != frame1.shape or frame0.dtype != frame1.dtype:
        raise InputError(f"frames of a pair differ: {frame0.shape} {frame0.dtype} vs {frame1.shape} {frame1.dtype}")


def full_scale(frame: np.ndarray) -> float:
    """The value of white: 255 for uint8 frames, 65535 for uint16 ones."""
    return float(np.iinfo(frame.dtype).max)


def as_8bit(frame: np.ndarray) -> np.ndarray:
    """An 8-bit view for measures that only judge (optical flow, cut detection), never for output pixels."""
    return frame if frame.dtype == np.uint8 else (frame >> 8).astype(np.uint8)
