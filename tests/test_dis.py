"""The weight-free DIS interpolator on synthetic frames whose true in-between frames are known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.quality import texture  # the benchmark's synthetic clips are made of the same texture
from slomo_core.errors import ConfigError, InputError
from slomo_core.interp.base import PairRequest
from slomo_core.interp.dis import DISInterpolator

H, W = 96, 128
BIG = texture(0, H + 64, W + 64)


def view(dx: float, dy: float) -> np.ndarray:
    """The scene moved by (dx, dy) pixels: view(d)(p) = view(0)(p - d); integer shifts only."""
    y, x = 32 - int(dy), 32 - int(dx)
    return BIG[y : y + H, x : x + W].copy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def blend(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a.astype(np.uint16) + b + 1) // 2).astype(np.uint8)


@pytest.fixture(scope="module")
def dis() -> DISInterpolator:
    return DISInterpolator()


def test_flow_recovers_a_known_shift(dis: DISInterpolator) -> None:
    flow01, flow10 = dis.compute_flows(view(0, 0), view(6, -4))
    assert flow01.shape == flow10.shape == (H, W, 2) and flow01.dtype == np.float32
    inner = (slice(16, -16), slice(16, -16))
    assert np.median(np.abs(flow01[inner] - (6, -4))) < 0.2
    assert np.median(np.abs(flow10[inner] - (-6, 4))) < 0.2


def test_midpoint_of_a_shift_is_the_half_shift(dis: DISInterpolator) -> None:
    frame0, frame1, truth = view(0, 0), view(8, 4), view(4, 2)
    [[mid]] = dis.interpolate([PairRequest(frame0, frame1, (0.5,))])
    inner = (slice(8, -8), slice(8, -8))
    ours, naive = psnr(mid[inner], truth[inner]), psnr(blend(frame0, frame1)[inner], truth[inner])
    assert ours > 40.0
    assert ours > naive + 15.0


def test_output_shape_dtype_and_times_in_order() -> None:
    dis = DISInterpolator()
    times = (0.25, 0.5, 0.75)
    [frames] = dis.interpolate([PairRequest(view(0, 0), view(8, 0), times)])
    assert len(frames) == len(times)
    truths = [view(2, 0), view(4, 0), view(6, 0)]
    inner = (slice(8, -8), slice(12, -12))
    for k, frame in enumerate(frames):
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8 and frame.flags["C_CONTIGUOUS"]
        scores = [psnr(frame[inner], truth[inner]) for truth in truths]
        assert int(np.argmax(scores)) == k and scores[k] > 40.0


def test_many_times_per_pair_match_single_calls(dis: DISInterpolator) -> None:
    frame0, frame1 = view(0, 0), view(6, 2)
    times = tuple(np.linspace(0.05, 0.95, 19).tolist())
    [batched] = dis.interpolate([PairRequest(frame0, frame1, times)])
    assert len(batched) == len(times)
    for k in (0, 9, 18):
        [[alone]] = dis.interpolate([PairRequest(frame0, frame1, (times[k],))])
        assert np.abs(alone.astype(int) - batched[k]).max() <= 1
    # Frames drift from frame0 towards frame1 as t grows.
    to_frame0 = [psnr(f, frame0) for f in batched]
    assert to_frame0[0] > to_frame0[9] > to_frame0[18]


def test_square_moving_over_texture_with_occlusion(dis: DISInterpolator) -> None:
    background, square = texture(1, H, W), texture(2, 32, 32)

    def scene(x: int) -> np.ndarray:
        frame = background.copy()
        frame[32:64, x : x + 32] = square
        return frame

    frame0, frame1, truth = scene(40), scene(48), scene(44)
    [[mid]] = dis.interpolate([PairRequest(frame0, frame1, (0.5,))])
    ours, naive = psnr(mid, truth), psnr(blend(frame0, frame1), truth)
    assert ours > naive + 7.0
    # The square itself lands where it belongs at t=0.5.
    assert psnr(mid[36:60, 48:72], square[4:28, 4:28]) > 35.0


def test_flow_candidates_fix_eq4_at_an_occluding_edge() -> None:
    """A square moves 8 px over a still background: at its edges DIS's two flows disagree and eq. 4's blend of
    them lands between the square and the background; the candidate whose two warps agree does not."""
    background, square = texture(1, H, W), texture(2, 32, 32)

    def scene(x: int) -> np.ndarray:
        frame = background.copy()
        frame[32:64, x : x + 32] = square
        return frame

    request = PairRequest(scene(40), scene(48), (0.5,))
    [[eq4_alone]] = DISInterpolator(flow_candidates=False).interpolate([request])
    [[candidates]] = DISInterpolator().interpolate([request])
    assert psnr(candidates, scene(44)) > psnr(eq4_alone, scene(44)) + 1.0  # 38.6 against 36.8 dB


def test_requests_map_one_to_one_and_empty_times(dis: DISInterpolator) -> None:
    a, b, c = view(0, 0), view(2, 0), view(4, 0)
    out = dis.interpolate([PairRequest(a, b, (0.5,)), PairRequest(b, c, ()), PairRequest(b, c, (0.3, 0.6))])
    assert [len(frames) for frames in out] == [1, 0, 2]
    assert dis.interpolate([]) == []


def test_flat_and_tiny_frames_stay_finite(dis: DISInterpolator) -> None:
    grey = np.full((H, W, 3), 128, np.uint8)
    [[same]] = dis.interpolate([PairRequest(grey, grey, (0.5,))])
    assert np.array_equal(same, grey)
    black, white = np.zeros((H, W, 3), np.uint8), np.full((H, W, 3), 255, np.uint8)
    [[mid]] = dis.interpolate([PairRequest(black, white, (0.25,))])
    assert abs(int(mid.mean()) - 64) <= 2  # no occlusion evidence: a plain time-weighted blend
    tiny0 = texture(3, 6, 5)
    [[small]] = dis.interpolate([PairRequest(tiny0, np.roll(tiny0, 1, axis=1), (0.5,))])
    assert small.shape == (6, 5, 3)


def test_bad_input_is_rejected(dis: DISInterpolator) -> None:
    a = view(0, 0)
    with pytest.raises(InputError):
        dis.interpolate([PairRequest(a, a[:-1], (0.5,))])
    with pytest.raises(InputError):
        dis.interpolate([PairRequest(a.astype(np.float32), a.astype(np.float32), (0.5,))])
    for t in (0.0, 1.0, -0.5):
        with pytest.raises(ConfigError):
            dis.interpolate([PairRequest(a, a, (t,))])
    with pytest.raises(ConfigError):
        DISInterpolator(preset="slow")
    with pytest.raises(ConfigError):
        DISInterpolator(visibility_floor=0.0)
    with pytest.raises(ConfigError):
        DISInterpolator(outside_weight=0.0)
    with pytest.raises(ConfigError):
        DISInterpolator(flow_threads=0)
    with pytest.raises(ConfigError):
        DISInterpolator(agreement_scale=0.0)
    with pytest.raises(ConfigError):
        DISInterpolator(agreement_window=0)


def test_threads_left_alone_unless_asked() -> None:
    before = cv2.getNumThreads()
    DISInterpolator(preset="fast")
    assert cv2.getNumThreads() == before
    assert DISInterpolator.name == "dis"


def test_flows_on_several_threads_give_the_same_frames() -> None:
    """Flows queued on a pool of solvers, synthesis beside them: the frames of one solver, in request order."""
    frames = [view(2 * n, -n) for n in range(6)]
    requests = [PairRequest(a, b, () if n == 2 else (0.25, 0.5)) for n, (a, b) in enumerate(zip(frames, frames[1:]))]
    one = DISInterpolator(flow_threads=1).interpolate(requests)
    three = DISInterpolator(flow_threads=3).interpolate(requests)
    assert [len(frames) for frames in three] == [2, 2, 0, 2, 2]
    assert all(np.array_equal(a, b) for x, y in zip(one, three, strict=True) for a, b in zip(x, y, strict=True))


def test_outside_weight_lowers_only_samples_from_beyond_the_edge() -> None:
    frame0, frame1 = view(0, 0), view(8, 0)
    [[plain]] = DISInterpolator().interpolate([PairRequest(frame0, frame1, (0.5,))])
    [[edged]] = DISInterpolator(outside_weight=0.01).interpolate([PairRequest(frame0, frame1, (0.5,))])
    inner = (slice(8, -8), slice(12, -12))
    assert np.abs(plain[inner].astype(int) - edged[inner]).max() <= 1
    # The left columns come from beyond frame 0's left edge: frame 1 alone is right there.
    truth = view(4, 0)
    assert psnr(edged[:, :4], truth[:, :4]) > psnr(plain[:, :4], truth[:, :4]) + 3.0
