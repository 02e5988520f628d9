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
Dropped duplicate frames (dedup.py) change no output time: an output of pair i is re-timed onto the
kept frames a <= i < i+1 <= b around it (``retimed``), t' = (p_i + t (p_{i+1} - p_i) - p_a) / (p_b - p_a).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from slomo_core.errors import ConfigError

Mode = Literal["slowmo", "fps"]
MODES: tuple[Mode, ...] = ("slowmo", "fps")
MAX_FACTOR = 64
# Decimal spellings of NTSC rates mean the exact 1001-based rates, as everywhere in video.
_NTSC = {"23.976": Fraction(24000, 1001), "29.97": Fraction(30000, 1001), "47.952": Fraction(48000, 1001),
         "59.94": Fraction(60000, 1001), "119.88": Fraction(120000, 1001), "239.76": Fraction(240000, 1001)}


def parse_frame_rate(text: str) -> Fraction:
    """'60', '59.94' (= 60000/1001) or '60000/1001'."""
    try:
        rate = _NTSC.get(text.strip()) or Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"not a frame rate: {text!r} (examples: 60, 59.94, 60000/1001)") from None
    if rate <= 0:
        raise ConfigError(f"frame rate must be positive, got {text!r}")
    return rate
TAIL_POLICY = "last input frame emitted once as an original frame; no extrapolation past it"


@dataclass(frozen=True)
class RateSpec:
    """What the user asked for: an integer factor (either mode) or a target frame rate (fps mode)."""

    mode: Mode
    factor: int | None = None
    target_fps: Fraction | None = None

    def validate(self) -> None:
        if self.mode not in MODES:
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


def retimed(out: OutputFrame, pi: int, pj: int, anchor: int, pa: int, pb: int) -> OutputFrame:
    """``out`` (of the pair with pts pi, pj) as the same output time between kept frames ``anchor`` (pts
    pa) and the next kept frame (pts pb): same pts, exact t. With pa == pi and pb == pj nothing changes."""
    if not pa <= pi < pj <= pb:
        raise ConfigError(f"pair ({pi}, {pj}) is not between kept frames at {pa} and {pb}")
    return OutputFrame(anchor, (pi - pa + out.t * (pj - pi)) / (pb - pa), out.pts)


class OutputTimeline:
    """Maps the input pts sequence to output frames for a RateSpec; pure integer/Fraction arithmetic.

    A chunk builds its timeline from its own frames: ``input_pts`` are frames ``first_index`` onwards
    and ``origin_pts`` is p_0 of the whole video, so pair indices and output pts are global.
    """

    def __init__(
        self,
        spec: RateSpec,
        input_pts: Sequence[int],
        input_time_base: Fraction,
        *,
        origin_pts: int | None = None,
        first_index: int = 0,
    ) -> None:
        spec.validate()
        if len(input_pts) < 2:
            raise ConfigError("interpolation needs at least two frames")
        for i in range(1, len(input_pts)):
            if input_pts[i] <= input_pts[i - 1]:
                raise ConfigError(f"input timestamps must increase (frame {i}: {input_pts[i]} <= {input_pts[i - 1]})")
        self.spec = spec
        self.input_pts = list(input_pts)
        self.input_time_base = Fraction(input_time_base)
        self.origin = self.input_pts[0] if origin_pts is None else int(origin_pts)
        self.first_index = first_index
        if self.origin > self.input_pts[0] or first_index < 0 or (first_index == 0 and self.origin != self.input_pts[0]):
            raise ConfigError("origin_pts must be the pts of frame 0, at or before the first frame given")
        if spec.factor is not None:
            n = spec.factor
            self.time_base = self.input_time_base if spec.mode == "slowmo" else self.input_time_base / n
        else:
            self.time_base = 1 / Fraction(spec.target_fps)

    @property
    def pair_count(self) -> int:
        return len(self.input_pts) - 1

    @property
    def pair_range(self) -> range:
        """Global indices of the pairs this timeline covers."""
        return range(self.first_index, self.first_index + self.pair_count)

    def _grid_index_at_or_after(self, input_pts: int) -> int:
        seconds = (input_pts - self.origin) * self.input_time_base
        return math.ceil(seconds / self.time_base)

    def pair_outputs(self, i: int) -> list[OutputFrame]:
        """Output frames owned by pair (i, i+1) (global index), in presentation order."""
        if i not in self.pair_range:
            raise IndexError(f"pair {i} out of range {self.pair_range.start}..{self.pair_range.stop - 1}")
        local = i - self.first_index
        return self.outputs_between(i, self.input_pts[local], self.input_pts[local + 1])

    def outputs_between(self, i: int, pi: int, pj: int) -> list[OutputFrame]:
        """Outputs of pair i from its two pts alone (plus p_0): what lets a chunk stream its frames."""
        if pj <= pi:
            raise ConfigError(f"input timestamps must increase (frame {i + 1}: {pj} <= {pi})")
        p0 = self.origin
        if self.spec.factor is not None:
            n = self.spec.factor
            return [OutputFrame(i, Fraction(k, n), n * (pi - p0) + k * (pj - pi)) for k in range(n)]
        start, stop = self._grid_index_at_or_after(pi), self._grid_index_at_or_after(pj)
        span = (pj - pi) * self.input_time_base
        offset = (pi - p0) * self.input_time_base
        return [OutputFrame(i, (j * self.time_base - offset) / span, j) for j in range(start, stop)]

    def last_output(self) -> OutputFrame:
        """The tail: the last input frame, emitted once as an original frame."""
        return self.tail_output(self.first_index + len(self.input_pts) - 1, self.input_pts[-1])

    def tail_output(self, index: int, last_pts: int) -> OutputFrame:
        if self.spec.factor is not None:
            pts = self.spec.factor * (last_pts - self.origin)
        else:
            pts = self._grid_index_at_or_after(last_pts)
        return OutputFrame(index, Fraction(0), pts)

    def all_outputs(self, include_tail: bool = True) -> list[OutputFrame]:
        """Every output of the covered pairs, plus the tail frame (for a chunk: only the video's last)."""
        frames = [f for i in self.pair_range for f in self.pair_outputs(i)]
        if include_tail:
            frames.append(self.last_output())
        return frames

    def output_count(self, include_tail: bool = True) -> int:
        tail = 1 if include_tail else 0
        if self.spec.factor is not None:
            return self.pair_count * self.spec.factor + tail
        first = self._grid_index_at_or_after(self.input_pts[0])
        return self._grid_index_at_or_after(self.input_pts[-1]) - first + tail

    def nominal_rate(self, input_rate: Fraction | None) -> Fraction | None:
        """The output's nominal frame rate (a hint for encoders; timestamps stay exact regardless)."""
        if self.spec.target_fps is not None:
            return Fraction(self.spec.target_fps)
        if input_rate is None:
            return None
        return Fraction(input_rate) * (self.spec.factor if self.spec.mode == "fps" else 1)
