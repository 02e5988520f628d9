"""Input timestamps that real files get wrong, repaired once per file the way FFmpeg repairs them.

Two kinds of real-world damage, both common in AVI (a container that stores no presentation times):
- **Non-monotonic or missing pts.** FFmpeg synthesises AVI pts from the packet order; with B-frames the
  decoder then shows frames whose pts go backwards. FFmpeg's ``best_effort_timestamp`` falls back to the
  decode timestamps (dts) when pts are faulty, and to the frame order when neither helps. Its choice is
  made frame by frame from the history, so a chunk decoded after a seek could choose differently than a
  whole-file decode. Here the choice is made once, for the whole file, from every frame's timestamps,
  and display frame k always gets the k-th repaired timestamp: plan, chunk decode and stitch agree.
- **Sparse streams.** Captures that drop frames leave empty slots: the header declares one frame per
  slot, the file holds fewer. When the frames present reach the declared end, the stream is complete,
  only sparse; when they stop short, it is truncated.

Pure functions; the demuxing and decoding that feed them live in ``probe.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

RepairMethod = Literal["dts", "frame order"]


@dataclass(frozen=True)
class TimestampRepair:
    """How a file's frame timestamps were repaired: which method, how many frames changed, and why."""

    method: RepairMethod
    frames: int
    reason: str

    def describe(self) -> str:
        return f"repaired: {self.frames} frame(s) re-timed from {self.method} ({self.reason})"


@dataclass(frozen=True)
class SparseStream:
    """Fewer frames than the declared slots, spread over the whole declared duration (dropped frames)."""

    frames: int
    declared: int

    def describe(self) -> str:
        return f"sparse: {self.frames} frames over {self.declared} declared slots; output follows the real frame times"


def _strictly_increasing(values: Sequence[int | None]) -> bool:
    return all(v is not None for v in values) and all(b > a for a, b in zip(values, values[1:]))  # type: ignore[operator]


def frame_step(time_base: Fraction, rate: Fraction | None) -> int | None:
    """One frame at the stream's declared rate, in whole time-base units (None without a rate)."""
    if not rate or rate <= 0 or not time_base:
        return None
    return max(1, round(1 / (Fraction(rate) * Fraction(time_base))))


def pts_need_decoding(packet_pts: Sequence[int | None], reorders: bool) -> str | None:
    """Why the packets' pts cannot be trusted as display times without decoding (None: they can).

    Missing or repeated pts are plainly damaged. ``reorders``: the codec reorders frames (B-frames) in a
    container that stores no pts (AVI). Real display times then go back in decode order; pts that never
    do were made up from the packet order, and the frames the decoder shows will not carry them in order.
    """
    if any(p is None for p in packet_pts):
        return "packets without pts"
    if len(set(packet_pts)) != len(packet_pts):
        return "packets sharing a pts"
    if reorders and len(packet_pts) > 2 and _strictly_increasing(packet_pts):
        return "pts out of display order: B-frames in a container that stores no pts"
    return None


def repair_timestamps(
    shown_pts: Sequence[int | None],
    decode_dts: Sequence[int | None],
    step: int | None,
    reason: str,
) -> tuple[list[int], TimestampRepair | None]:
    """Display-order timestamps for every frame: the decoder's own when they increase, else repaired.

    ``shown_pts``: the pts of the frames as the decoder shows them (display order); ``decode_dts``: the
    packets' dts in decode order. Repair uses the dts when there is one per frame and they increase,
    else the frame order at ``step`` per frame from the first known timestamp.
    """
    if _strictly_increasing(shown_pts):
        return [int(p) for p in shown_pts], None  # type: ignore[arg-type]
    count = len(shown_pts)
    if len(decode_dts) == count and _strictly_increasing(decode_dts):
        repaired, method = [int(d) for d in decode_dts], "dts"  # type: ignore[arg-type]
    else:
        known = [p for p in shown_pts if p is not None] + [d for d in decode_dts if d is not None]
        start = min(known) if known else 0
        repaired, method = [start + k * (step or 1) for k in range(count)], "frame order"
    changed = sum(1 for old, new in zip(shown_pts, repaired) if old != new)
    return repaired, TimestampRepair(method, changed, reason)  # type: ignore[arg-type]


def sparse_or_truncated(
    pts: Sequence[int], found: int, declared: int, step: int | None, duration: int | None, start: int = 0
) -> SparseStream | str | None:
    """Judge a stream with fewer frames than declared: sparse (complete), truncated (the reason), or fine.

    Complete means the frames present reach the declared end: the last frame, lasting as long as the
    typical (median) gap between frames, ends at or after the declared duration (a capture that dropped
    its last frames reads as truncated). ``step`` (one frame at the declared rate) stands in for the
    gap of a one-frame stream and for a missing duration; without it nothing can be judged and fewer
    frames than declared is called truncated, as before.
    ``found`` counts the frames present, including packets a player skips (outside an edit list).
    """
    if declared <= 0 or found >= declared:
        return None
    truncated = f"truncated: declared {declared} frames, found {found}"
    if step is None:
        return truncated
    gaps = sorted(b - a for a, b in zip(pts, pts[1:]))
    last_lasts = gaps[len(gaps) // 2] if gaps else step
    declared_span = duration if duration and duration > 0 else declared * step
    if pts[-1] + last_lasts - start >= declared_span:
        return SparseStream(found, declared)
    return truncated
