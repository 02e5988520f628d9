"""Output timestamps: the formulas of DESIGN.md, exact integers for CFR, NTSC and VFR input."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from slomo_core.errors import ConfigError
from slomo_core.timestamps import OutputTimeline, RateSpec


def test_slowmo_cfr_counts_and_pts() -> None:
    pts = [i * 512 for i in range(10)]  # 25 fps in 1/12800
    tl = OutputTimeline(RateSpec("slowmo", factor=4), pts, Fraction(1, 12800))
    outs = tl.all_outputs()
    assert len(outs) == tl.output_count() == (10 - 1) * 4 + 1
    assert tl.time_base == Fraction(1, 12800)
    assert [o.pts for o in outs] == [k * 512 for k in range(37)]  # same frame rate, 4x as long
    assert outs[-1].pair == 9 and outs[-1].t == 0  # the last input frame is kept


def test_fps_mode_same_integers_finer_time_base() -> None:
    pts = [i * 512 for i in range(5)]
    slow = OutputTimeline(RateSpec("slowmo", factor=4), pts, Fraction(1, 12800))
    fast = OutputTimeline(RateSpec("fps", factor=4), pts, Fraction(1, 12800))
    assert [o.pts for o in slow.all_outputs()] == [o.pts for o in fast.all_outputs()]
    assert fast.time_base == Fraction(1, 51200)
    last = fast.last_output()
    assert last.pts * fast.time_base == pts[-1] * Fraction(1, 12800)  # same duration


def test_ntsc_rate_stays_exact() -> None:
    pts = [i * 1001 for i in range(6)]  # 30000/1001 in 1/30000
    tl = OutputTimeline(RateSpec("fps", factor=2), pts, Fraction(1, 30000))
    seconds = [o.pts * tl.time_base for o in tl.all_outputs()]
    assert seconds == [Fraction(k * 1001, 60000) for k in range(11)]


def test_vfr_input_follows_each_interval() -> None:
    pts = [0, 100, 130, 400, 401]
    tl = OutputTimeline(RateSpec("slowmo", factor=2), pts, Fraction(1, 1000))
    assert [(o.pair, o.t, o.pts) for o in tl.all_outputs()] == [
        (0, 0, 0), (0, Fraction(1, 2), 100),
        (1, 0, 200), (1, Fraction(1, 2), 230),
        (2, 0, 260), (2, Fraction(1, 2), 530),
        (3, 0, 800), (3, Fraction(1, 2), 801),
        (4, 0, 802),
    ]


def test_nonzero_start_is_rebased() -> None:
    tl = OutputTimeline(RateSpec("slowmo", factor=3), [1000, 1040, 1080], Fraction(1, 1000))
    assert [o.pts for o in tl.all_outputs()] == [0, 40, 80, 120, 160, 200, 240]


def test_target_rate_24_to_60() -> None:
    pts = list(range(0, 5))  # 24 fps in 1/24
    tl = OutputTimeline(RateSpec("fps", target_fps=Fraction(60)), pts, Fraction(1, 24))
    outs = tl.all_outputs()
    assert tl.time_base == Fraction(1, 60)
    assert [o.pts for o in outs] == list(range(11))  # 4/24 s at 60 fps = 10 intervals, + the last frame
    assert [(o.pair, o.t) for o in outs[:4]] == [(0, 0), (0, Fraction(2, 5)), (0, Fraction(4, 5)), (1, Fraction(1, 5))]
    assert all(0 <= o.t < 1 for o in outs)
    assert tl.output_count() == len(outs)


def test_target_rate_ntsc() -> None:
    pts = [i * 1001 for i in range(4)]
    tl = OutputTimeline(RateSpec("fps", target_fps=Fraction(60000, 1001)), pts, Fraction(1, 30000))
    outs = tl.all_outputs()
    assert [o.pts for o in outs] == list(range(7))
    assert [o.t for o in outs] == [0, Fraction(1, 2)] * 3 + [0]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("spec", [RateSpec("slowmo", factor=5), RateSpec("fps", factor=3), RateSpec("fps", target_fps=Fraction(48))])
def test_random_vfr_outputs_strictly_increase(seed: int, spec: RateSpec) -> None:
    rng = random.Random(seed)
    pts = [rng.randrange(0, 50)]
    for _ in range(30):
        pts.append(pts[-1] + rng.randrange(1, 90))
    tl = OutputTimeline(spec, pts, Fraction(1, 1000))
    outs = tl.all_outputs()
    assert all(b.pts > a.pts for a, b in zip(outs, outs[1:]))
    assert all(0 <= o.t < 1 for o in outs) and len(outs) == tl.output_count()
    assert outs[0].pts == 0 and outs[-1].pair == len(pts) - 1
    # Every output time lies within its pair's interval, at exactly the fraction t.
    for o in outs[:-1]:
        seconds = o.pts * tl.time_base * (Fraction(1, spec.factor) if spec.mode == "slowmo" else 1)
        start = (pts[o.pair] - pts[0]) * Fraction(1, 1000)
        span = (pts[o.pair + 1] - pts[o.pair]) * Fraction(1, 1000)
        assert seconds == start + o.t * span


@pytest.mark.parametrize(
    "spec",
    [
        RateSpec("slowmo", factor=1),
        RateSpec("slowmo", factor=0),
        RateSpec("slowmo", factor=-3),
        RateSpec("slowmo", factor=1000),
        RateSpec("slowmo", target_fps=Fraction(60)),
        RateSpec("fps"),
        RateSpec("fps", factor=2, target_fps=Fraction(60)),
        RateSpec("fps", target_fps=Fraction(0)),
        RateSpec("warp", factor=2),
    ],
)
def test_bad_specs(spec: RateSpec) -> None:
    with pytest.raises(ConfigError):
        spec.validate()


def test_needs_two_frames_and_increasing_pts() -> None:
    with pytest.raises(ConfigError):
        OutputTimeline(RateSpec("slowmo", factor=2), [0], Fraction(1, 25))
    with pytest.raises(ConfigError):
        OutputTimeline(RateSpec("slowmo", factor=2), [0, 5, 5], Fraction(1, 25))
