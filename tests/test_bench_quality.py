"""bench/quality.py: metrics, the dropped-frame protocol and cut exclusion, on synthetic frames (fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.quality import (
    Group,
    blend_method,
    drop_groups,
    exclude_cuts,
    interpolator_method,
    psnr,
    score,
    ssim,
    synthetic_clip,
)
from slomo_core.interp.dis import DISInterpolator


def _image(seed: int = 0, h: int = 64, w: int = 80) -> np.ndarray:
    return synthetic_clip(w, h, 1, (0, 0), (0, 0), 8, (4, 4), seed=seed)[0]


def test_psnr_identical_is_inf() -> None:
    image = _image()
    assert psnr(image, image) == math.inf


def test_psnr_known_noise_level() -> None:
    base = np.full((100, 100, 3), 128, np.uint8)
    noisy = base.copy()
    noisy[::2] += 10  # half the pixels off by 10: MSE = 50
    assert psnr(base, noisy) == pytest.approx(10 * math.log10(255**2 / 50), abs=1e-9)
    rng = np.random.default_rng(0)
    gauss = np.clip(base + rng.normal(0, 5, base.shape).round(), 0, 255).astype(np.uint8)
    assert psnr(base, gauss) == pytest.approx(10 * math.log10(255**2 / 25), abs=0.1)


def test_ssim_identical_is_one_and_drops_with_noise() -> None:
    image = _image(1)
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(0)
    values = []
    for sigma in (2, 8, 25):
        noisy = np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
        values.append(ssim(image, noisy))
    assert 1.0 > values[0] > values[1] > values[2] > 0.0


def test_groups_factor_2_on_17_frames() -> None:
    groups = drop_groups(17, 2)
    assert [(g.start, g.end) for g in groups] == [(i, i + 2) for i in range(0, 16, 2)]
    assert [g.targets for g in groups] == [(i + 1,) for i in range(0, 16, 2)]
    assert all(g.times == (0.5,) for g in groups)


def test_groups_factor_8_on_17_frames() -> None:
    groups = drop_groups(17, 8)
    assert groups == [
        Group(0, 8, tuple(range(1, 8)), tuple(k / 8 for k in range(1, 8))),
        Group(8, 16, tuple(range(9, 16)), tuple(k / 8 for k in range(1, 8))),
    ]
    kept = sorted({g.start for g in groups} | {g.end for g in groups})
    assert kept == [0, 8, 16]


def test_dis_beats_blend_on_moving_square() -> None:
    frames = synthetic_clip(64, 48, 9, (1, 0), (-2, 1), 12, (40, 8), seed=5)
    groups = drop_groups(len(frames), 2)
    blend_psnr, _ = score(frames, groups, blend_method(frames, groups, 2)[0])
    dis_psnr, _ = score(frames, groups, interpolator_method(DISInterpolator)(frames, groups, 2)[0])
    assert dis_psnr > blend_psnr + 1.0


def test_cut_exclusion_removes_the_spanning_group() -> None:
    scene_a = synthetic_clip(96, 64, 9, (1, 0), (1, 0), 16, (10, 10), seed=1)
    scene_b = [255 - f for f in synthetic_clip(96, 64, 8, (0, 1), (-1, 0), 20, (60, 30), seed=7)]
    frames = scene_a + scene_b  # cut between frames 8 and 9
    groups = drop_groups(len(frames), 2)
    kept = exclude_cuts(frames, groups)
    assert [g for g in groups if g not in kept] == [Group(8, 10, (9,), (0.5,))]
