"""Super SloMo's frame synthesis in torch, for the network and its training.

Differentiable torch on NCHW tensors: backward warping under a ``WarpConvention`` (``model.warp_convention``:
how pixel flow becomes a ``grid_sample`` grid, how it pads, how fusion's division is guarded), and the
paper's eq. 4 and eq. 1 (``model.equations``, shared with the weight-free interpolator's numpy) with their
times as batch tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slomo_core.model import equations
from slomo_core.model.warp_convention import SLOMO_WARP, WarpConvention


def backward_warp(image: torch.Tensor, flow: torch.Tensor, convention: WarpConvention = SLOMO_WARP) -> torch.Tensor:
    """Sample ``image`` at ``p + flow(p)`` (bilinear), computed in fp32, under ``convention``.

    ``flow`` is in pixels, channel 0 horizontal, channel 1 vertical. The default is slomo's convention
    (``2x/(W-1) - 1``, ``align_corners=True``, border clamped), so an integer shift is recovered exactly.
    """
    _, _, h, w = flow.shape
    # Coordinates need fp32: bf16 cannot even represent every pixel index of a 1080p row.
    flow = flow.float()
    ys = torch.arange(h, device=flow.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=torch.float32).view(1, 1, w)
    if convention.denominator == "size_minus_one":
        x = 2.0 * (xs + flow[:, 0]) / max(w - 1, 1) - 1.0
        y = 2.0 * (ys + flow[:, 1]) / max(h - 1, 1) - 1.0
    else:
        x = 2.0 * ((xs + flow[:, 0]) / w - 0.5)
        y = 2.0 * ((ys + flow[:, 1]) / h - 0.5)
    grid = torch.stack((x, y), dim=3)
    warped = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode=convention.padding,
                           align_corners=convention.align_corners)
    return warped.to(image.dtype)


def _as_batch_times(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.reshape(-1, 1, 1, 1) if t.ndim > 0 else t


def approximate_intermediate_flows(
    flow01: torch.Tensor, flow10: torch.Tensor, t: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """F_t->0 and F_t->1 from the bidirectional flows (paper eq. 4, ``equations.intermediate_flows``);
    ``t`` is a float or one value per batch element."""
    return equations.intermediate_flows(flow01, flow10, _as_batch_times(t, flow01))


def fuse(
    warped0: torch.Tensor,
    warped1: torch.Tensor,
    visibility0: torch.Tensor,
    visibility1: torch.Tensor,
    t: torch.Tensor | float,
    eps: float = SLOMO_WARP.fusion_eps,
) -> torch.Tensor:
    """Visibility-weighted fusion (paper eq. 1, ``equations.fuse``); ``t`` is a float or one value per
    batch element, ``eps`` the model's ``WarpConvention.fusion_eps``."""
    return equations.fuse(warped0, warped1, visibility0, visibility1, _as_batch_times(t, warped0), eps)
