"""The network's pieces: flow formulas, warping, padding, architecture size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slomo_core.interp.network import crop_to, pad_to_multiple
from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig
from slomo_core.model.synthesis import (
    approximate_intermediate_flows,
    backward_warp,
    fuse,
)
from slomo_core.model.unet import UNet

TINY = SuperSloMoConfig(widths=(4, 8, 8, 8, 8, 8))


def textured(h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((1, 3, h, w), generator=g)


@pytest.mark.parametrize("t", [0.125, 0.5, 0.8])
def test_intermediate_flow_formula_matches_paper(t: float) -> None:
    f01, f10 = torch.randn(2, 2, 5, 7), torch.randn(2, 2, 5, 7)
    ft0, ft1 = approximate_intermediate_flows(f01, f10, t)
    # atol: the two sides round differently, and random flows have entries near 0 where rtol alone fails.
    assert torch.allclose(ft0, -(1 - t) * t * f01 + t * t * f10, atol=1e-6)
    assert torch.allclose(ft1, (1 - t) ** 2 * f01 - t * (1 - t) * f10, atol=1e-6)


def test_intermediate_flow_for_linear_motion_is_exact() -> None:
    # Constant motion v: F01 = v, F10 = -v  =>  F_t0 = -t v and F_t1 = (1 - t) v.
    v = torch.tensor([3.0, -2.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    for t in (0.25, 0.5, 0.75):
        ft0, ft1 = approximate_intermediate_flows(v, -v, t)
        assert torch.allclose(ft0, -t * v) and torch.allclose(ft1, (1 - t) * v)


def test_per_sample_times_broadcast() -> None:
    f01, f10 = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    times = torch.tensor([0.25, 0.5, 0.75])
    ft0, _ = approximate_intermediate_flows(f01, f10, times)
    for n, t in enumerate(times.tolist()):
        assert torch.allclose(ft0[n], approximate_intermediate_flows(f01[n : n + 1], f10[n : n + 1], t)[0][0])


@pytest.mark.parametrize("dx,dy", [(3, 0), (0, -2), (5, 4)])
def test_backward_warp_recovers_integer_shift(dx: int, dy: int) -> None:
    image = textured()
    shifted = torch.roll(image, shifts=(dy, dx), dims=(2, 3))  # shifted(p) = image(p - d)
    d = torch.tensor([float(dx), float(dy)]).view(1, 2, 1, 1).expand(1, 2, *image.shape[-2:])
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    # g(I, F)(p) = I(p + F(p)): warping with +d undoes the shift, with -d reproduces it.
    assert torch.allclose(backward_warp(shifted, d)[inner], image[inner], atol=1e-5)
    assert torch.allclose(backward_warp(image, -d)[inner], shifted[inner], atol=1e-5)


def test_backward_warp_half_pixel_is_bilinear() -> None:
    image = textured()
    flow = torch.zeros(1, 2, *image.shape[-2:])
    flow[:, 0] = 0.5
    warped = backward_warp(image, flow)
    expected = 0.5 * (image[..., :-1] + image[..., 1:])
    assert torch.allclose(warped[..., :-1], expected, atol=1e-5)


def test_fusion_weights_follow_time_and_visibility() -> None:
    a, b = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    ones = torch.ones(1, 1, 2, 2)
    assert torch.allclose(fuse(a, b, ones, ones, 0.25), torch.full_like(a, 0.25), atol=1e-5)
    # Occluded in frame 1 (V_t1 = 0): the result comes from frame 0 alone.
    assert torch.allclose(fuse(a, b, ones, 0 * ones, 0.9), a, atol=1e-5)


@pytest.mark.parametrize("h,w", [(32, 32), (33, 65), (272, 640), (1, 1)])
def test_pad_and_crop_round_trip(h: int, w: int) -> None:
    frames = torch.rand(2, 3, h, w)
    padded, size = pad_to_multiple(frames)
    assert padded.shape[-2] % 32 == 0 and padded.shape[-1] % 32 == 0
    assert padded.shape[-2] - h < 32 and padded.shape[-1] - w < 32
    assert size == (h, w)
    assert torch.equal(crop_to(padded, size), frames)
    assert torch.equal(padded[..., -1, :w], padded[..., h - 1, :w].expand_as(padded[..., -1, :w]))


def test_full_architecture_size() -> None:
    model = SuperSloMo()
    n = sum(p.numel() for p in model.parameters())
    assert 39.5e6 < n < 39.7e6  # the paper's ~39.6 M
    assert sum(p.numel() for p in UNet(6, 4).parameters()) < n


def test_forward_shapes_and_range() -> None:
    torch.manual_seed(0)
    model = SuperSloMo(TINY).eval()
    f0, f1 = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = model(f0, f1, [0.25, 0.5, 0.75])
    assert out.shape == (6, 3, 64, 96)
    assert torch.isfinite(out).all()


def test_zero_network_is_time_weighted_blend() -> None:
    # Zero weights => zero flows and V_t0 = 0.5: fusion reduces to (1-t) I0 + t I1, a closed form.
    model = SuperSloMo(TINY).eval()
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    f0, f1 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = model(f0, f1, [0.25])
    assert torch.allclose(out, 0.75 * f0 + 0.25 * f1, atol=1e-5)


def test_gradients_flow_to_both_networks() -> None:
    model = SuperSloMo(TINY)
    f0, f1 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    model(f0, f1, [0.5]).mean().backward()
    assert model.flow_net.conv1.weight.grad is not None and model.flow_net.conv1.weight.grad.abs().sum() > 0
    assert model.interp_net.conv1.weight.grad.abs().sum() > 0


def test_numpy_free_of_global_state() -> None:
    # Two models with different dtypes do not interfere (normalisation constants live per call).
    a = SuperSloMo(TINY).eval()
    b = SuperSloMo(TINY).eval()
    b.load_state_dict(a.state_dict())
    b.place("cpu", torch.bfloat16, channels_last=True)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        fa = a(x, x, [0.5])
        fb = b(x, x, [0.5])
    assert np.isfinite(fb.numpy()).all()
    assert (fa - fb).abs().mean() < 0.05
