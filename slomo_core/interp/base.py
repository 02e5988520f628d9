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

    Frames are HxWx3 uint8 RGB arrays of the same size; ``times`` are floats strictly inside (0, 1).
    """

    frame0: np.ndarray
    frame1: np.ndarray
    times: tuple[float, ...]


class FrameInterpolator(Protocol):
    """Produces, for each request, one HxWx3 uint8 RGB frame per requested time, in order."""

    name: str

    def interpolate(self, requests: Sequence[PairRequest]) -> list[list[np.ndarray]]: ...


def check_frame_pair(frame0: np.ndarray, frame1: np.ndarray) -> None:
    """Both frames HxWx3 uint8 RGB of one size, or an InputError saying what they are."""
    for frame in (frame0, frame1):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"frames must be HxWx3 uint8 RGB, got {frame.dtype} {frame.shape}")
    if frame0.shape != frame1.shape:
        raise InputError(f"frames of a pair differ in size: {frame0.shape} vs {frame1.shape}")
