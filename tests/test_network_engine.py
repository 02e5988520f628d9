"""The network behind the FrameInterpolator interface: batching, budgets, tiling, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slomo_core.errors import ConfigError
from slomo_core.interp.base import PairRequest
from slomo_core.interp.network import InferenceSettings, SuperSloMoInterpolator
from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig

TINY = SuperSloMoConfig(widths=(4, 8, 8, 8, 8, 8))


def _model(seed: int = 0, zero: bool = False) -> SuperSloMo:
    torch.manual_seed(seed)
    model = SuperSloMo(TINY)
    if zero:
        for p in model.parameters():
            torch.nn.init.zeros_(p)
    return model


def _frames(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _requests(n: int, h: int = 40, w: int = 70) -> list[PairRequest]:
    return [PairRequest(_frames(h, w, 2 * i), _frames(h, w, 2 * i + 1), (0.25, 0.5, 0.75)[: 1 + i % 3]) for i in range(n)]


def test_outputs_match_request_layout() -> None:
    out = SuperSloMoInterpolator(_model()).interpolate(_requests(3))
    assert [len(o) for o in out] == [1, 2, 3]
    assert all(f.shape == (40, 70, 3) and f.dtype == np.uint8 for o in out for f in o)


def test_batched_equals_one_by_one() -> None:
    engine = SuperSloMoInterpolator(_model())
    requests = _requests(4)
    together = engine.interpolate(requests)
    alone = [engine.interpolate([r])[0] for r in requests]
    for a, b in zip(together, alone):
        for x, y in zip(a, b):
            assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


def test_small_budget_splits_batches_without_changing_results() -> None:
    requests = _requests(3, 64, 64)
    big = SuperSloMoInterpolator(_model(), InferenceSettings(max_batch_pixels=1 << 22)).interpolate(requests)
    small = SuperSloMoInterpolator(_model(), InferenceSettings(max_batch_pixels=128 * 128)).interpolate(requests)
    for a, b in zip(big, small):
        for x, y in zip(a, b):
            assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


def test_tiling_assembles_exactly_for_a_local_model() -> None:
    # A zero network is a per-pixel blend, so tiles + feathering must reproduce it everywhere.
    a, b = _frames(200, 150, 1), _frames(200, 150, 2)
    tiled = SuperSloMoInterpolator(_model(zero=True), InferenceSettings(max_batch_pixels=128 * 128, tile_overlap=16))
    (frames,) = tiled.interpolate([PairRequest(a, b, (0.25, 0.5))])
    for t, frame in zip((0.25, 0.5), frames):
        expected = (1 - t) * a.astype(float) + t * b.astype(float)
        assert np.abs(frame - expected).max() <= 1.0


def test_tiling_is_close_to_untiled_for_a_random_model() -> None:
    a, b = _frames(256, 256, 3), _frames(256, 256, 4)
    whole = SuperSloMoInterpolator(_model()).interpolate([PairRequest(a, b, (0.5,))])[0][0]
    tiled = SuperSloMoInterpolator(_model(), InferenceSettings(max_batch_pixels=160 * 160)).interpolate(
        [PairRequest(a, b, (0.5,))]
    )[0][0]
    assert tiled.shape == whole.shape
    assert np.abs(tiled.astype(float) - whole).mean() < 8.0


def test_channels_last_and_bf16_agree_with_fp32() -> None:
    requests = _requests(2)
    ref = SuperSloMoInterpolator(_model()).interpolate(requests)
    cl = SuperSloMoInterpolator(_model(), InferenceSettings(channels_last=True)).interpolate(requests)
    bf = SuperSloMoInterpolator(_model(), InferenceSettings(dtype="bf16", channels_last=True)).interpolate(requests)
    for r, c, b in zip(ref, cl, bf):
        for x, y, z in zip(r, c, b):
            assert np.abs(x.astype(int) - y.astype(int)).max() <= 1
            assert np.abs(x.astype(float) - z).mean() < 3.0


def test_odd_sizes_are_padded_not_resized() -> None:
    a, b = _frames(33, 47, 5), _frames(33, 47, 6)
    (frames,) = SuperSloMoInterpolator(_model(zero=True)).interpolate([PairRequest(a, b, (0.5,))])
    assert frames[0].shape == (33, 47, 3)
    assert np.abs(frames[0] - (a.astype(float) + b) / 2).max() <= 1.0


@pytest.mark.parametrize("times", [(0.0,), (1.0,), (0.5, 1.2), (-0.1,)])
def test_times_outside_open_interval_rejected(times: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        SuperSloMoInterpolator(_model()).interpolate([PairRequest(_frames(8, 8, 0), _frames(8, 8, 1), times)])


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        SuperSloMoInterpolator(_model(), InferenceSettings(dtype="fp8"))
    with pytest.raises(ConfigError):
        SuperSloMoInterpolator(_model(), InferenceSettings(max_batch_pixels=10))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            SuperSloMoInterpolator(_model(), InferenceSettings(device="cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    requests = _requests(2)
    cpu = SuperSloMoInterpolator(_model()).interpolate(requests)
    gpu = SuperSloMoInterpolator(_model(), InferenceSettings(device="cuda")).interpolate(requests)
    for a, b in zip(cpu, gpu):
        for x, y in zip(a, b):
            assert np.abs(x.astype(int) - y.astype(int)).max() <= 2


def test_auto_dtype_follows_the_hardware() -> None:
    from slomo_core.interp.network import resolve_inference_dtype
    from slomo_core.runtime import cpu_has_native_bf16

    cpu = torch.device("cpu")
    assert resolve_inference_dtype("auto", cpu) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert resolve_inference_dtype("fp16", cpu) == torch.float16
    assert SuperSloMoInterpolator(SuperSloMo(SuperSloMoConfig(widths=(8, 8, 8, 8, 8, 8)))).dtype == \
        resolve_inference_dtype("auto", cpu)


@pytest.mark.slow
def test_compiled_network_matches_eager() -> None:
    torch.manual_seed(0)
    config = SuperSloMoConfig(widths=(8, 16, 16, 16, 16, 16))
    eager_model = SuperSloMo(config)
    compiled_model = SuperSloMo(config)
    compiled_model.load_state_dict(eager_model.state_dict())
    frame0 = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    frame1 = np.roll(frame0, 3, axis=1)
    request = [PairRequest(frame0, frame1, (0.25, 0.5, 0.75))]
    eager = SuperSloMoInterpolator(eager_model, InferenceSettings(dtype="fp32")).interpolate(request)
    compiled = SuperSloMoInterpolator(compiled_model, InferenceSettings(dtype="fp32", compile=True)).interpolate(request)
    for a, b in zip(eager[0], compiled[0]):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
