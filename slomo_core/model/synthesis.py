"""Super SloMo's frame synthesis, shared by the network and the weight-free interpolator.

Everything here is differentiable torch on NCHW tensors: backward warping, the intermediate-flow
approximation of the paper (eq. 4) and the visibility-weighted fusion (eq. 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` at ``p + flow(p)`` (bilinear, border clamped), computed in fp32.

    ``flow`` is in pixels, channel 0 horizontal, channel 1 vertical. Uses the exact pixel-centre
    normalisation (``align_corners=True``), so an integer shift is recovered exactly.
    """
    _, _, h, w = flow.shape
    # Coordinates need fp32: bf16 cannot even represent every pixel index of a 1080p row.
    flow = flow.float()
    ys = torch.arange(h, device=flow.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=torch.float32).view(1, 1, w)
    x = 2.0 * (xs + flow[:, 0]) / max(w - 1, 1) - 1.0
    y = 2.0 * (ys + flow[:, 1]) / max(h - 1, 1) - 1.0
    grid = torch.stack((x, y), dim=3)
    warped = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return warped.to(image.dtype)


def _as_batch_times(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.reshape(-1, 1, 1, 1) if t.ndim > 0 else t


def approximate_intermediate_flows(
    flow01: torch.Tensor, flow10: torch.Tensor, t: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """F_t->0 and F_t->1 from the bidirectional flows (paper eq. 4).

    F_t->0 = -(1-t) t F_0->1 + t^2 F_1->0 ;  F_t->1 = (1-t)^2 F_0->1 - t (1-t) F_1->0.
    ``t`` is a float or one value per batch element.
    """
    t = _as_batch_times(t, flow01)
    flow_t0 = -(1 - t) * t * flow01 + t * t * flow10
    flow_t1 = (1 - t) * (1 - t) * flow01 - t * (1 - t) * flow10
    return flow_t0, flow_t1


def fuse(
    warped0: torch.Tensor,
    warped1: torch.Tensor,
    visibility0: torch.Tensor,
    visibility1: torch.Tensor,
    t: torch.Tensor | float,
    eps: float = 1e-6,
) -> torch.Tensor:
    """I_t = ((1-t) V_t0 g(I0) + t V_t1 g(I1)) / ((1-t) V_t0 + t V_t1)  (paper eq. 1)."""
    t = _as_batch_times(t, warped0)
    w0 = (1 - t) * visibility0
    w1 = t * visibility1
    return (w0 * warped0 + w1 * warped1) / (w0 + w1 + eps)
