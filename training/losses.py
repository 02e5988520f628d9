"""The paper's training losses (Jiang et al. 2018, sec. 3.3) on frames in [0, 1].

l = lr * l_reconstruction + lw * l_warping + ls * l_smoothness (+ lp * l_perceptual).
The weights are the public re-implementation's (204 = 0.8 * 255 and 102 = 0.4 * 255: the paper's
weights with losses on a 0-255 scale). The perceptual term needs ImageNet VGG-16 features, which cannot
be had offline here (torchvision downloads them at run time), so it is left out; the other three terms
are as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slomo_core.model.superslomo import SuperSloMo
from slomo_core.model.synthesis import approximate_intermediate_flows, backward_warp


@dataclass(frozen=True)
class LossWeights:
    reconstruction: float = 204.0
    warping: float = 102.0
    smoothness: float = 1.0


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean()


def smoothness(flow: torch.Tensor) -> torch.Tensor:
    """Total variation of a flow field (mean absolute horizontal and vertical differences)."""
    return (flow[:, :, :, 1:] - flow[:, :, :, :-1]).abs().mean() + (flow[:, :, 1:] - flow[:, :, :-1]).abs().mean()


class SuperSloMoObjective(nn.Module):
    """Wraps the network so one ``forward`` returns every loss term (the unit DDP wraps in Ray Train)."""

    def __init__(self, model: SuperSloMo, weights: LossWeights = LossWeights()) -> None:
        super().__init__()
        self.model = model
        self.weights = weights
        self.distill = None  # a training.distill.Distiller (a plain object: not part of the module) when set

    def forward(self, frame0: torch.Tensor, frame_t: torch.Tensor, frame1: torch.Tensor, t: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        flow01, flow10 = self.model.compute_flows(frame0, frame1)
        out = self.model.synthesize(frame0, frame1, flow01, flow10, t)
        approx_t0, approx_t1 = approximate_intermediate_flows(flow01, flow10, t)
        reconstruction = l1(out.frames, frame_t)
        warp = self.model.config.warp  # the warping loss warps as the model does
        warping = (
            l1(backward_warp(frame1, flow01, warp), frame0)
            + l1(backward_warp(frame0, flow10, warp), frame1)
            + l1(backward_warp(frame0, approx_t0, warp), frame_t)
            + l1(backward_warp(frame1, approx_t1, warp), frame_t)
        )
        smooth = smoothness(flow01) + smoothness(flow10)
        w = self.weights
        total = w.reconstruction * reconstruction + w.warping * warping + w.smoothness * smooth
        distilled = self.distill(frame0, frame1, t, out) if self.distill is not None else {}
        total = total + distilled.pop("distill", 0.0)
        return {"total": total, "reconstruction": reconstruction, "warping": warping, "smoothness": smooth,
                **distilled, "prediction": out.frames.detach()}
