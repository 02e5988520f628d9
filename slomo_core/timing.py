"""Output timestamps: which (pair, t) every output frame comes from, and its exact integer pts.

Rules (DESIGN.md): input frames 0..M-1 have integer pts p_i in the stream time base tb; never assume a
constant frame rate. Pair i owns output frames (i, k), k = 0 being the original frame i.
- slowmo, integer factor N: out_pts(i, k) = N (p_i - p_0) + k (p_{i+1} - p_i), time base tb
  (same frame rate, N times longer).
- fps, integer factor N: the same integers in time base tb / N (same duration, N times the frames).
- fps, target rate F: a regular grid j / F (time base 1 / F); pair i owns the grid points in
  [p_i, p_{i+1}) and t = (T_j - p_i) / (p_{i+1} - p_i).
Tail: the last input frame is emitted once, as an original frame, at N (p_{M-1} - p_0) (integer
modes) or at the first grid point at or after it (target rate); nothing is extrapolated past it.
Every formula needs only p_0, p_i and p_{i+1}, so any chunking of the pairs gives the same result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from slomo_core.errors import ConfigError

Mode = Literal["slowmo", "fps"]
MAX_FACTOR = 64
TAIL_POLICY = "last input frame emitted once as an original frame; no extrapolation past it"


@dataclass(frozen=True)
class RateSpec:
    """What the user asked for: an integer factor (either mode) or a target frame rate (fps mode)."""

    mode: Mode
    factor: int | None = None
    target_fps: Fraction | None = None

    def validate(self) -> None:
        if self.mode not in ("slowmo", "fps"):
            raise ConfigError(f"mode must be 'slowmo' or 'fps', got {self.mode!r}")
        if (self.factor is None) == (self.target_fps is None):
            raise ConfigError("give exactly one of --factor or --fps")
        if self.factor is not None:
            if int(self.factor) != self.factor or self.factor < 2:
                raise ConfigError(f"--factor must be an integer >= 2, got {self.factor}")
            if self.factor > MAX_FACTOR:
                raise ConfigError(f"--factor {self.factor} is absurd (at most {MAX_FACTOR})")
        if self.target_fps is not None:
            if self.mode != "fps":
                raise ConfigError("--fps (a target frame rate) needs --mode fps; slow motion takes --factor")
            if self.target_fps <= 0 or self.target_fps > 1000:
                raise ConfigError(f"--fps must be in (0, 1000], got {float(self.target_fps):g}")

    @property
    def stretch(self) -> float:
        """How much longer the output plays than the input (audio follows this)."""
        return float(self.factor) if self.mode == "slowmo" and self.factor else 1.0


@dataclass(frozen=True)
class OutputFrame:
    """One output frame: from pair ``pair`` at time ``t`` (t == 0: the original frame ``pair``)."""

    pair: int
    t: Fraction
    pts: int


class OutputTimeline:
    """Maps the input pts sequence to output frames for a RateSpec; pure integer/Fraction arithmetic."""

    def __init__(self, spec: RateSpec, input_pts: Sequence[int], input_time_base: Fraction) -> None:
        spec.validate()
        if len(input_pts) < 2:
            raise ConfigError("interpolation needs at least two frames")
        for i in range(1, len(input_pts)):
            if input_pts[i] <= input_pts[i - 1]:
                raise ConfigError(f"input timestamps must increase (frame {i}: {input_pts[i]} <= {input_pts[i - 1]})")
        self.spec = spec
        self.input_pts = list(input_pts)
        self.input_time_base = Fraction(input_time_base)
        if spec.factor is not None:
            n = spec.factor
            self.time_base = self.input_time_base if spec.mode == "slowmo" else self.input_time_base / n
        else:
            self.time_base = 1 / Fraction(spec.target_fps)

    @property
    def pair_count(self) -> int:
        return len(self.input_pts) - 1

    def _grid_index_at_or_after(self, input_pts: int) -> int:
        seconds = (input_pts - self.input_pts[0]) * self.input_time_base
        return math.ceil(seconds / self.time_base)

    def pair_outputs(self, i: int) -> list[OutputFrame]:
        """Output frames owned by pair (i, i+1), in presentation order."""
        if not 0 <= i < self.pair_count:
            raise IndexError(f"pair {i} out of range 0..{self.pair_count - 1}")
        p0, pi, pj = self.input_pts[0], self.input_pts[i], self.input_pts[i + 1]
        if self.spec.factor is not None:
            n = self.spec.factor
            return [OutputFrame(i, Fraction(k, n), n * (pi - p0) + k * (pj - pi)) for k in range(n)]
        start, stop = self._grid_index_at_or_after(pi), self._grid_index_at_or_after(pj)
        span = (pj - pi) * self.input_time_base
        offset = (pi - p0) * self.input_time_base
        return [OutputFrame(i, (j * self.time_base - offset) / span, j) for j in range(start, stop)]

    def last_output(self) -> OutputFrame:
        """The tail: the last input frame, emitted once as an original frame."""
        last = len(self.input_pts) - 1
        if self.spec.factor is not None:
            pts = self.spec.factor * (self.input_pts[last] - self.input_pts[0])
        else:
            pts = self._grid_index_at_or_after(self.input_pts[last])
        return OutputFrame(last, Fraction(0), pts)

    def all_outputs(self) -> list[OutputFrame]:
        frames = [f for i in range(self.pair_count) for f in self.pair_outputs(i)]
        frames.append(self.last_output())
        return frames

    def output_count(self) -> int:
        if self.spec.factor is not None:
            return self.pair_count * self.spec.factor + 1
        return self.last_output().pts - self._grid_index_at_or_after(self.input_pts[0]) + 1

    def nominal_rate(self, input_rate: Fraction | None) -> Fraction | None:
        """The output's nominal frame rate (a hint for encoders; timestamps stay exact regardless)."""
        if self.spec.target_fps is not None:
            return Fraction(self.spec.target_fps)
        if input_rate is None:
            return None
        return Fraction(input_rate) * (self.spec.factor if self.spec.mode == "fps" else 1)
