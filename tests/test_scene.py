"""Scene-cut detection: fires on unrelated pictures, stays quiet under motion and brightness changes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slomo_core.errors import ConfigError, InputError
from slomo_core.scene import DEFAULT_THRESHOLD, SceneCutDetector

H, W = 90, 160


def texture(seed: int, h: int, w: int, tint: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Smoothed multi-scale noise, tinted: a stand-in for one shot's content."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((h, w, 3), np.float32)
    for sigma in (1.5, 4.0, 12.0):
        acc += sigma * cv2.GaussianBlur(rng.standard_normal((h, w, 3)).astype(np.float32), (0, 0), sigma)
    acc = (acc - acc.min()) / (acc.max() - acc.min())
    return (acc * np.asarray(tint, np.float32) * 255).round().clip(0, 255).astype(np.uint8)


SHOT_A = texture(0, H + 40, W + 40, (1.0, 0.8, 0.6))
SHOT_B = texture(1, H + 40, W + 40, (0.5, 0.8, 1.0))


def view(shot: np.ndarray, dx: int = 0, dy: int = 0) -> np.ndarray:
    return shot[20 + dy : 20 + dy + H, 20 + dx : 20 + dx + W].copy()


def grey(frame: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def detector() -> SceneCutDetector:
    return SceneCutDetector()


def test_cut_between_unrelated_shots_is_detected(detector: SceneCutDetector) -> None:
    a, b = view(SHOT_A), view(SHOT_B)
    assert detector.is_cut(a, b)
    assert detector.score(a, b) > DEFAULT_THRESHOLD + 0.1
    # Without colour, grey-level statistics and structure still tell shots of different tonality apart
    # (here a soft texture cut to a high-contrast two-tone one).
    other = grey(texture(5, H, W)).astype(np.float32)
    two_tone = cv2.GaussianBlur(np.where(other > other.mean(), 210.0, 40.0).astype(np.float32), (0, 0), 1.0)
    assert detector.is_cut(grey(a), two_tone.round().astype(np.uint8))


def test_moving_square_is_not_a_cut(detector: SceneCutDetector) -> None:
    background, square = view(SHOT_A), texture(7, 24, 24, (0.3, 1.0, 0.3))
    frames = []
    for x in range(10, 130, 12):
        frame = background.copy()
        frame[30:54, x : x + 24] = square
        frames.append(frame)
    scores = [detector.score(f0, f1) for f0, f1 in zip(frames, frames[1:])]
    assert max(scores) < DEFAULT_THRESHOLD / 2
    assert not any(detector.is_cut(f0, f1) for f0, f1 in zip(frames, frames[1:]))


@pytest.mark.parametrize("dx,dy", [(4, 0), (0, 3), (-8, 5), (16, 0)])
def test_camera_pan_is_not_a_cut(detector: SceneCutDetector, dx: int, dy: int) -> None:
    assert not detector.is_cut(view(SHOT_A), view(SHOT_A, dx, dy))


@pytest.mark.parametrize("gain,offset", [(1.1, 0), (0.9, 0), (1.0, 12), (1.0, -12)])
def test_brightness_change_is_not_a_cut(detector: SceneCutDetector, gain: float, offset: int) -> None:
    a = view(SHOT_A)
    b = np.clip(a.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
    assert detector.score(a, b) < DEFAULT_THRESHOLD / 2
    assert not detector.is_cut(grey(a), grey(b))


def test_score_is_bounded_symmetric_and_zero_on_identity(detector: SceneCutDetector) -> None:
    a, b = view(SHOT_A), view(SHOT_B)
    flat_black, flat_grey = np.zeros_like(a), np.full_like(a, 128)
    assert detector.score(a, a) == pytest.approx(0.0, abs=1e-9)
    assert detector.score(flat_black, flat_black) == pytest.approx(0.0, abs=1e-9)
    for x, y in [(a, b), (a, flat_black), (flat_grey, b), (a, 255 - a)]:
        s = detector.score(x, y)
        assert 0.0 <= s <= 1.0
        assert s == pytest.approx(detector.score(y, x), abs=1e-9)


def test_threshold_is_configurable() -> None:
    a, b = view(SHOT_A), view(SHOT_A, 16, 0)
    s = SceneCutDetector().score(a, b)
    assert SceneCutDetector(threshold=s * 0.9).is_cut(a, b)
    assert not SceneCutDetector(threshold=min(1.0, s * 1.1)).is_cut(a, b)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ConfigError):
            SceneCutDetector(threshold=bad)


def test_tiny_frames_and_bad_input(detector: SceneCutDetector) -> None:
    tiny0, tiny1 = texture(3, 4, 6), texture(4, 4, 6)
    assert 0.0 <= detector.score(tiny0, tiny1) <= 1.0
    with pytest.raises(InputError):
        detector.score(view(SHOT_A), view(SHOT_A)[:-1])
    with pytest.raises(InputError):
        detector.score(view(SHOT_A)[..., 0], view(SHOT_A)[..., 0])


def test_large_pan_is_not_a_cut_once_motion_is_compensated(detector: SceneCutDetector) -> None:
    # A pan of a quarter of the frame: the raw thumbnails no longer line up (structure distance near an
    # unrelated picture's), but after the flow warp they do, so the pair scores well under the threshold.
    shot = texture(0, H + 80, W + 80, (1.0, 0.8, 0.6))
    a, b = shot[40 : 40 + H, 40 : 40 + W], shot[64 : 64 + H, 80 : 80 + W]
    assert detector.structure_distance(a, b) > 0.4
    assert detector.motion_compensated_structure_distance(a, b) < detector.structure_distance(a, b) - 0.05
    assert detector.score(a, b) < DEFAULT_THRESHOLD - 0.04
    assert not detector.is_cut(a, b)


def test_is_cut_matches_the_full_score_at_any_threshold() -> None:
    # is_cut skips the flow when the uncompensated score is already under the threshold; the decision
    # must be the one the full score gives.
    shot = texture(0, H + 80, W + 80, (1.0, 0.8, 0.6))
    a = shot[40 : 40 + H, 40 : 40 + W]
    pairs = [(a, shot[40 + dy : 40 + dy + H, 40 + dx : 40 + dx + W]) for dx, dy in ((8, 0), (32, 0), (-40, 24))]
    pairs.append((view(SHOT_A), view(SHOT_B)))
    for f0, f1 in pairs:
        s = SceneCutDetector().score(f0, f1)
        for threshold in (s * 0.95, s * 1.05, DEFAULT_THRESHOLD):
            assert SceneCutDetector(threshold=min(threshold, 1.0)).is_cut(f0, f1) == (s >= threshold)


def test_bikes_cuts_found_and_large_motion_passed_over(footage, detector: SceneCutDetector) -> None:
    """Real footage, bikes.mp4 (shots end after frames 29, 75, 136, 186, 241, checked by eye): every cut is
    found between consecutive frames and across 8 frames (the quality bench's x8 pairs), and no pair
    8 frames apart without a cut is flagged: 64-72 and 96-104 (fast motion) were, before compensation."""
    from slomo_core.video.decode import iter_frames

    frames = [frame.image for frame in iter_frames(str(footage / "bikes.mp4"), 0, 250)]
    cuts = (29, 75, 136, 186, 241)
    assert all(detector.is_cut(frames[c], frames[c + 1]) for c in cuts)
    flagged = {s for s in range(0, len(frames) - 8, 8) if detector.is_cut(frames[s], frames[s + 8])}
    assert flagged == {s for s in range(0, len(frames) - 8, 8) if any(s <= c < s + 8 for c in cuts)}
