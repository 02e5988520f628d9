"""bench/dis_variants.py: its rows measure what they claim, on a tiny synthetic clip and known flow fields (fast)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.dis_variants import BASELINE, NAMED_CANDIDATES, build_variant, main, measure, table
from slomo_core.interp.dis import DISInterpolator, _pixel_grid


def test_eq4_row_is_the_baseline_and_the_dis_row_is_its_candidates() -> None:
    """The same flows as the baseline's and the same synthesis as the interpolator's: differences between
    rows are the intermediate flows' alone."""
    cells, flow_ms = measure(["synth96"], [2], ["dis", "eq4", "eq4 fwd bwd", "fp1"], max_groups=3, log=lambda _: None)
    row = cells[2]["synth96"]
    assert len(row[BASELINE].psnrs) == 3 and flow_ms > 0
    assert abs(row["eq4"].psnr - row[BASELINE].psnr) < 0.01
    assert row["eq4 fwd bwd"].psnrs == row["dis"].psnrs
    assert row["fp1"].psnr != row["eq4"].psnr
    text = table(cells, ["dis", "eq4", "eq4 fwd bwd", "fp1"])
    assert f"| {BASELINE} | " in text and "(+0.000)" in text


def test_fixed_point_inverts_a_non_uniform_flow_better_than_eq4() -> None:
    """Points move as x -> (1 + c) x, so the pixel p at time t came from p / (1 + c t): F_t0(p) = -p c t / (1 + c t).
    Eq. 4 and a flow read at p are first-order in the flow's variation; the fixed points converge to the exact inverse."""
    h, w, c, t = 8, 64, 0.2, np.float32(0.5)
    xs = np.broadcast_to(np.arange(w, dtype=np.float32), (h, w))
    flow01 = np.dstack((c * xs, np.zeros_like(xs))).astype(np.float32)
    flow10 = np.dstack((-xs * c / (1 + c), np.zeros_like(xs))).astype(np.float32)
    exact = -xs * c * t / (1 + c * t)
    grid = _pixel_grid(h, w)
    inner = (slice(None), slice(4, w - 8))

    def error(name: str) -> float:
        flow_t0, _ = NAMED_CANDIDATES[name](flow01, flow10, t, grid)
        return float(np.abs(flow_t0[..., 0] - exact)[inner].max())

    assert error("fp3") < error("fp1") < error("eq4") / 5  # measured 0.0017, 0.0054, 0.042 px
    assert error("fwd-inv2") < error("fwd") / 50  # one flow read where the pixel came from: 0.006 against 0.5 px


def test_unknown_candidate_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="unknown candidates"):
        build_variant("eq4 warp-everything", DISInterpolator(flow_threads=1))
    with pytest.raises(SystemExit):
        main(["--variants", "eq4 nonsense", "--clips", "synth96"])
