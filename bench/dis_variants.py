"""Intermediate-flow variants of the `dis` interpolator, side by side on the same DIS flows.

Per clip, factor and group, DIS's two flows are computed once (``DISInterpolator.compute_flows``: DIS-MEDIUM,
patch stride 3, the flow of the ``dis-warp-average`` row) and every variant synthesises the dropped frames
from them; the ``dis-warp-average`` row is ``bench.quality.dis_warp_average`` itself (its own flows, the
same DIS preset). Groups, clips and PSNR are bench.quality's (bikes without the groups that span a known cut).
Each cell is mean PSNR in dB and its difference from ``dis-warp-average``; "worst" is the smallest
difference over the cells, "ms/pair" the synthesis of one group's times on the host (flows excluded, but
for the baseline's row, which computes its own: DIS's two flows per pair are timed on their own line).

Variants (F01, F10 DIS's flows, t the time, g(I, F) the backward warp; all but the interpolator rows blend
their candidates as ``dis`` does: each candidate's two warps fused (1-t, t), the frames weighted per pixel
by exp(-(d - d_min) / 20 levels), d the candidate's 3x3 box-filtered disagreement between its two warps):

* eq4: the paper's eq. 4, F_t0 = -(1-t) t F01 + t^2 F10, F_t1 = (1-t)^2 F01 - t (1-t) F10.
* fwd / bwd: one flow alone, (-t F01, (1-t) F01) and (t F10, -(1-t) F10), both read at p.
* fp{k}: the fixed-point inverse of each flow from eq. 4's estimate, k iterations of
  F_t0(p) = -t F01(p + F_t0(p)) and F_t1(p) = -(1-t) F10(p + F_t1(p)): eq. 4 is its first-order form.
* fwd-inv{k} / bwd-inv{k}: one flow's trajectory followed to its source: s = F01(p + F_t0(p)) iterated k times
  from fwd, then (F_t0, F_t1) = (-t s, (1-t) s): both ends on the same straight path, read where the pixel
  came from instead of at p (bwd-inv the same from F10).

    python -m bench.dis_variants                               # every clip, x2 and x8, every group (~1.5 min on 2 cores)
    python -m bench.dis_variants --clips carphone synth96 --factors 2 --variants dis "eq4 fp1"
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from bench.quality import CLIPS, dis_warp_average, drop_groups, psnr, sample_groups, spans_cut
from slomo_core.interp.base import PairRequest
from slomo_core.interp.dis import DISInterpolator, _warp, backward_only, forward_only
from slomo_core.model.equations import intermediate_flows

BASELINE = "dis-warp-average"
Flows = tuple[np.ndarray, np.ndarray]
# A candidate maps (F01, F10, t, pixel grid) to its (F_t0, F_t1).
Candidate = Callable[[np.ndarray, np.ndarray, np.float32, np.ndarray], Flows]
# A variant maps (frame0, frame1, DIS flows, times) to one uint8 frame per time.
Variant = Callable[[np.ndarray, np.ndarray, Flows, Sequence[float]], list[np.ndarray]]


def eq4(flow01: np.ndarray, flow10: np.ndarray, t: np.float32, grid: np.ndarray) -> Flows:
    return intermediate_flows(flow01, flow10, t)


def fwd(flow01: np.ndarray, flow10: np.ndarray, t: np.float32, grid: np.ndarray) -> Flows:
    return forward_only(flow01, flow10, t)


def bwd(flow01: np.ndarray, flow10: np.ndarray, t: np.float32, grid: np.ndarray) -> Flows:
    return backward_only(flow01, flow10, t)


def fixed_point(iterations: int) -> Candidate:
    """Each flow's inverse at time t, iterated from eq. 4: F_t0(p) = -t F01(p + F_t0(p)), likewise F_t1."""

    def candidate(flow01: np.ndarray, flow10: np.ndarray, t: np.float32, grid: np.ndarray) -> Flows:
        flow_t0, flow_t1 = intermediate_flows(flow01, flow10, t)
        for _ in range(iterations):
            flow_t0, flow_t1 = -t * _warp(flow01, flow_t0, grid), -(1 - t) * _warp(flow10, flow_t1, grid)
        return flow_t0, flow_t1

    return candidate


def trajectory(iterations: int, forward: bool) -> Candidate:
    """One flow read where the pixel at time t came from (its fixed point from the flow read at p), both
    ends of the same straight path: (-t s, (1-t) s) with s = F01(p - t s), or (t s, -(1-t) s) from F10."""

    def candidate(flow01: np.ndarray, flow10: np.ndarray, t: np.float32, grid: np.ndarray) -> Flows:
        flow, near = (flow01, -t) if forward else (flow10, -(1 - t))
        sample = flow
        for _ in range(iterations):
            sample = _warp(flow, near * sample, grid)
        return (-t * sample, (1 - t) * sample) if forward else (t * sample, -(1 - t) * sample)

    return candidate


def blended(candidates: Sequence[Candidate], interp: DISInterpolator) -> Variant:
    """The candidates' (1-t, t) fusions weighed per pixel by their warps' agreement through ``dis``'s own
    ``synthesize_at`` (its scale and window), no visibility; one candidate = a plain fusion."""

    def run(frame0: np.ndarray, frame1: np.ndarray, flows: Flows, times: Sequence[float]) -> list[np.ndarray]:
        flow01, flow10 = flows
        grid = interp._grid(*flow01.shape[:2])
        image0, image1 = frame0.astype(np.float32), frame1.astype(np.float32)
        out = []
        for t in (np.float32(t) for t in times):
            estimates = [candidate(flow01, flow10, t, grid) for candidate in candidates]
            frame = interp.synthesize_at(image0, image1, estimates, t, grid, None, np.float32(interp.agreement_scale))
            out.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
        return out

    return run


def interpolator(interp: DISInterpolator) -> Variant:
    """A DISInterpolator's own synthesis on the given flows (its flows are not recomputed)."""

    def run(frame0: np.ndarray, frame1: np.ndarray, flows: Flows, times: Sequence[float]) -> list[np.ndarray]:
        return interp._interpolate_pair(PairRequest(frame0, frame1, tuple(times)), flows)

    return run


NAMED_CANDIDATES: dict[str, Candidate] = {
    "eq4": eq4, "fwd": fwd, "bwd": bwd,
    **{f"fp{k}": fixed_point(k) for k in (1, 2, 3)},
    **{f"fwd-inv{k}": trajectory(k, True) for k in (1, 2)},
    **{f"bwd-inv{k}": trajectory(k, False) for k in (1, 2)},
}

DEFAULT_VARIANTS = (
    "dis", "dis (before: eq4 alone, floor 0.9)", "eq4", "eq4 fwd bwd",
    "fp1", "fp2", "fp3",
    "eq4 fp1", "eq4 fwd-inv1 bwd-inv1", "eq4 fwd-inv2 bwd-inv2",
    "eq4 fwd bwd fp1", "eq4 fwd bwd fwd-inv1 bwd-inv1", "fp1 fwd bwd",
)


def build_variant(name: str, interp: DISInterpolator) -> Variant:
    """'dis' and 'dis (before...)' are the interpolator's own synthesis; otherwise a space-separated list
    of NAMED_CANDIDATES blended by agreement."""
    if name == "dis":
        return interpolator(interp)
    if name.startswith("dis (before"):
        return interpolator(DISInterpolator(flow_candidates=False, visibility_floor=0.9, flow_threads=1))
    unknown = [part for part in name.split() if part not in NAMED_CANDIDATES]
    if unknown:
        raise ValueError(f"unknown candidates {unknown} in variant {name!r}: choose from {list(NAMED_CANDIDATES)}")
    return blended([NAMED_CANDIDATES[part] for part in name.split()], interp)


@dataclass
class Cell:
    psnrs: list[float] = field(default_factory=list)
    seconds: float = 0.0
    pairs: int = 0

    @property
    def psnr(self) -> float:
        return float(np.mean(self.psnrs))

    @property
    def ms_per_pair(self) -> float:
        return 1e3 * self.seconds / max(1, self.pairs)


def measure(clips: Sequence[str], factors: Sequence[int], variants: Sequence[str], max_groups: int | None,
            log: Callable[[str], None] = print) -> tuple[dict[int, dict[str, dict[str, Cell]]], float]:
    """cells[factor][clip][row] and DIS's ms per pair (both directions, one thread)."""
    interp = DISInterpolator(flow_threads=1)
    built = {name: build_variant(name, interp) for name in variants}
    dis_preset = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    cells: dict[int, dict[str, dict[str, Cell]]] = {f: {} for f in factors}
    flow_seconds, flow_pairs = 0.0, 0
    for clip_name in clips:
        clip = CLIPS[clip_name]
        frames = clip.load()
        for factor in factors:
            groups = [g for g in sample_groups(drop_groups(len(frames), factor), max_groups)
                      if not spans_cut(g, clip.cuts)]
            row = cells[factor].setdefault(clip_name, {})
            clip_flow_seconds = 0.0
            for g in groups:
                frame0, frame1 = frames[g.start], frames[g.end]
                begin = time.perf_counter()
                flows = interp.compute_flows(frame0, frame1)
                clip_flow_seconds += time.perf_counter() - begin
                runs: dict[str, Callable[[], list[np.ndarray]]] = {
                    BASELINE: lambda: dis_warp_average(frame0, frame1, g.times, dis_preset)}
                runs.update({name: (lambda v=v: v(frame0, frame1, flows, g.times)) for name, v in built.items()})
                for name, make in runs.items():
                    begin = time.perf_counter()
                    made = make()
                    cell = row.setdefault(name, Cell())
                    cell.seconds += time.perf_counter() - begin
                    cell.pairs += 1
                    cell.psnrs.extend(psnr(frames[i], image) for i, image in zip(g.targets, made, strict=True))
            flow_seconds, flow_pairs = flow_seconds + clip_flow_seconds, flow_pairs + len(groups)
            log(f"  {clip_name} x{factor}: {len(groups)} groups, " + ", ".join(
                f"{name} {cell.psnr - row[BASELINE].psnr:+.4f}" for name, cell in row.items() if name != BASELINE))
    return cells, 1e3 * flow_seconds / max(1, flow_pairs)


def table(cells: dict[int, dict[str, dict[str, Cell]]], rows: Sequence[str]) -> str:
    """Per factor: PSNR (difference from the baseline) per clip, worst difference, mean PSNR, ms/pair."""
    lines = []
    for factor, by_clip in cells.items():
        clips = list(by_clip)
        lines.append(f"\n### x{factor}: PSNR dB (difference from {BASELINE})\n")
        lines.append("| variant | " + " | ".join(clips) + " | worst | mean | ms/pair |")
        lines.append("|---|" + "---:|" * (len(clips) + 3))
        for name in (BASELINE, *rows):
            deltas = [by_clip[c][name].psnr - by_clip[c][BASELINE].psnr for c in clips]
            cells_text = [f"{by_clip[c][name].psnr:.3f} ({d:+.3f})" for c, d in zip(clips, deltas, strict=True)]
            mean = np.mean([by_clip[c][name].psnr for c in clips])
            ms = np.mean([by_clip[c][name].ms_per_pair for c in clips])
            lines.append(f"| {name} | " + " | ".join(cells_text) + f" | {min(deltas):+.3f} | {mean:.3f} | {ms:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", nargs="+", choices=list(CLIPS), default=list(CLIPS))
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                        help=f"'dis', 'dis (before...)' or candidates from {list(NAMED_CANDIDATES)} joined by spaces")
    parser.add_argument("--max-groups", type=int, default=128, help="groups per clip and factor, sampled evenly (0 = all)")
    args = parser.parse_args(argv)
    if any(f < 2 for f in args.factors):
        parser.error("factors must be >= 2")
    try:
        for name in args.variants:
            build_variant(name, DISInterpolator(flow_threads=1))
    except ValueError as error:
        parser.error(str(error))
    begin = time.perf_counter()
    cells, flow_ms = measure(args.clips, args.factors, args.variants, args.max_groups or None)
    print(table(cells, args.variants))
    print(f"DIS flows (both directions, one thread): {flow_ms:.1f} ms per pair, mean over every clip's pairs; "
          f"bikes without the groups spanning a known cut; wall time {time.perf_counter() - begin:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
