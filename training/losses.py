"""The paper's training losses (Jiang et al. 2018, sec. 3.3) on frames in [0, 1].

l = lr * l_reconstruction + lw * l_warping + ls * l_smoothness (+ lp * l_perceptual).
The weights are the public re-implementation's (204 = 0.8 * 255 and 102 = 0.4 * 255: the paper's
weights with losses on a 0-255 scale). The perceptual term needs ImageNet VGG-16 features, which cannot
be had offline here (torchvision downloads them at run time), so it is left out; the other three terms
are as in the paper.

``superslomo-dis`` (DIS flows + the interpolation U-Net) trains with ``DISHybridObjective``: the same
weights, minus the terms that no longer depend on anything learned (see its docstring).

Both objectives leave one hook open: ``distill``, when set, is called as ``distill(frame0, frame1, t, out)`` on
the network's ``IntermediateFrames`` and returns named terms; its ``"distill"`` entry (already weighted) is
added to the total and the others are logged (a distillation term from a teacher, for training only).
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

    description = "204*L1 reconstruction + 102*warping + smoothness (no perceptual: no offline VGG)"

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


class DISHybridObjective(SuperSloMoObjective):
    """The paper's losses for ``superslomo-dis``, where F_0->1 and F_1->0 are DIS's and carry no gradient.

    Kept: 204 x L1 reconstruction of I_t; 102 x warping, I_t from I0 and from I1 through the *refined*
    intermediate flows (what the U-Net predicts); smoothness (total variation) of those refined flows.
    Dropped, because they depend on the DIS flows alone and so on no learned parameter: warping I0 from I1
    and back through F_0->1 / F_1->0, I_t through the unrefined approximation (eq. 4), and the smoothness of
    F_0->1 / F_1->0. The perceptual term is left out as for the paper's network (no offline VGG-16).
    """

    description = ("204*L1 reconstruction + 102*warping of I0 and I1 to t through the refined flows + smoothness of "
                   "the refined flows (DIS flows carry no gradient; no perceptual: no offline VGG)")

    def forward(self, frame0: torch.Tensor, frame_t: torch.Tensor, frame1: torch.Tensor, t: torch.Tensor,
                flow01: torch.Tensor, flow10: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model.synthesize(frame0, frame1, flow01, flow10, t)
        reconstruction = l1(out.frames, frame_t)
        warp = self.model.config.warp
        warping = l1(backward_warp(frame0, out.flow_t0, warp), frame_t) + l1(backward_warp(frame1, out.flow_t1, warp), frame_t)
        smooth = smoothness(out.flow_t0) + smoothness(out.flow_t1)
        w = self.weights
        total = w.reconstruction * reconstruction + w.warping * warping + w.smoothness * smooth
        distilled = self.distill(frame0, frame1, t, out) if self.distill is not None else {}
        total = total + distilled.pop("distill", 0.0)
        return {"total": total, "reconstruction": reconstruction, "warping": warping, "smoothness": smooth,
                **distilled, "prediction": out.frames.detach()}
