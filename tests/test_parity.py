"""Parity with the public Super SloMo re-implementation: a public-layout file gives the public outputs.

The golden outputs and the rule that rebuilds their seeded checkpoint are in tests/data/parity (see its
README). The checkpoint is rebuilt in the public layout, written with torch.save and read back through
``load_superslomo``, the loader behind ``--weights``; then the bare network and the interpolation engine
the product runs are both compared with the public outputs for every t.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from slomo_core.interp.base import PairRequest
from slomo_core.interp.network import InferenceSettings, SuperSloMoInterpolator
from slomo_core.model.checkpoint import load_superslomo
from slomo_core.model.superslomo import SuperSloMo
from slomo_core.model.warp_convention import PUBLIC_WARP, SLOMO_WARP, WarpConvention

DATA = Path(__file__).parent / "data" / "parity"
TOLERANCE = 1e-4  # float32 reproduces the public outputs to ~1e-6
# The public code on torch < 1.3, where grid_sample's align_corners defaulted to True.
PUBLIC_WARP_BEFORE_TORCH_1_3 = replace(PUBLIC_WARP, name="public-torch<1.3", align_corners=True)


def _seeded_state(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """The README's rule: sorted keys, He-like normal weights scaled by 0.8, N(0, 0.01^2) biases."""
    rng = np.random.default_rng(seed)
    state = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        std = 0.8 * np.sqrt(2.0 / np.prod(shape[1:])) if key.endswith(".weight") else 0.01
        state[key] = torch.from_numpy(rng.normal(0.0, std, shape).astype(np.float32))
    return state


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(DATA / "superslomo_parity.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def public_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rule = json.loads((DATA / "superslomo_parity_weights.json").read_text())
    path = tmp_path_factory.mktemp("parity") / "SuperSloMo.ckpt"
    torch.save({"state_dictFC": _seeded_state(rule["shapes_FC"], rule["seed_FC"]),
                "state_dictAT": _seeded_state(rule["shapes_AT"], rule["seed_AT"])}, path)
    return path


@pytest.fixture(scope="module")
def public_model(public_file: Path) -> SuperSloMo:
    model, info = load_superslomo(str(public_file))
    assert info.layout == "public"
    return model


def _nchw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()


def _copy(model: SuperSloMo, warp: WarpConvention | None = None) -> SuperSloMo:
    """A separate model with the same weights (the engine moves its model in place), optionally another warp."""
    other = SuperSloMo(replace(model.config, warp=warp or model.config.warp))
    other.load_state_dict(model.state_dict())
    return other.eval()


@torch.no_grad()
def _network_outputs(model: SuperSloMo, golden: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(F_0->1 as 2xHxW, frames as TxHxWx3) from the bare module, float32 on the CPU."""
    frame0, frame1 = _nchw(golden["I0"]), _nchw(golden["I1"])
    flow01, _ = model.compute_flows(frame0, frame1)
    frames = model(frame0, frame1, torch.as_tensor(golden["ts"], dtype=torch.float32))
    return flow01[0].numpy(), frames.permute(0, 2, 3, 1).numpy()


def _max_error(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def test_public_file_runs_the_public_convention(public_model: SuperSloMo) -> None:
    assert public_model.config.warp == PUBLIC_WARP
    assert PUBLIC_WARP.fusion_eps == 0.0 and PUBLIC_WARP.padding == "zeros" and not PUBLIC_WARP.align_corners


def test_public_checkpoint_reproduces_public_outputs(public_model: SuperSloMo, golden: dict) -> None:
    flow01, frames = _network_outputs(public_model, golden)
    assert _max_error(flow01, golden["flow01_align_corners_False"]) <= TOLERANCE
    assert frames.shape == golden["out_align_corners_False"].shape  # one frame per t: 0.25, 0.5, 0.75
    for k, t in enumerate(golden["ts"]):
        assert _max_error(frames[k], golden["out_align_corners_False"][k]) <= TOLERANCE, f"t={t}"


def test_conventions_are_what_separates_the_outputs(public_model: SuperSloMo, golden: dict) -> None:
    """The old-torch public warp matches its own golden data; slomo's warp is far from the public one."""
    _, old_torch = _network_outputs(_copy(public_model, PUBLIC_WARP_BEFORE_TORCH_1_3), golden)
    assert _max_error(old_torch, golden["out_align_corners_True"]) <= TOLERANCE
    _, own = _network_outputs(_copy(public_model, SLOMO_WARP), golden)
    assert _max_error(own, golden["out_align_corners_False"]) > 100 * TOLERANCE


@pytest.mark.parametrize("max_batch_pixels", [None, 128 * 128])  # 128 * 128: two frames per pass
def test_engine_reproduces_public_outputs(public_model: SuperSloMo, golden: dict, max_batch_pixels: int | None) -> None:
    """The product's engine (padding, flow reuse, batching by pixel budget, channels_last) adds no error."""
    engine = SuperSloMoInterpolator(
        _copy(public_model), InferenceSettings(device="cpu", dtype="fp32", max_batch_pixels=max_batch_pixels))
    times = [tuple(float(t) for t in golden["ts"])]
    with torch.inference_mode():
        (frames,) = engine._run(_nchw(golden["I0"]), _nchw(golden["I1"]), times)
    assert _max_error(frames.permute(0, 2, 3, 1).numpy(), golden["out_align_corners_False"]) <= TOLERANCE


def test_engine_uint8_path_matches_the_network(public_model: SuperSloMo, golden: dict) -> None:
    """Frames as the product gets them (uint8 RGB): same result as the module on the same pixels, +-1 level."""
    frame0, frame1 = (np.round(golden[key] * 255).astype(np.uint8) for key in ("I0", "I1"))
    ts = tuple(float(t) for t in golden["ts"])
    engine = SuperSloMoInterpolator(_copy(public_model), InferenceSettings(device="cpu", dtype="fp32"))
    (made,) = engine.interpolate([PairRequest(frame0, frame1, ts)])
    with torch.no_grad():
        reference = public_model(_nchw(frame0 / np.float32(255)), _nchw(frame1 / np.float32(255)), ts)
    expected = reference.clamp(0, 1).mul(255).round().permute(0, 2, 3, 1).numpy()
    for k in range(len(ts)):
        assert _max_error(made[k], expected[k]) <= 1
