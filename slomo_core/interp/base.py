"""The interface every interpolator implements, so the pipeline never cares which model runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


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
