"""Super SloMo's frame synthesis, shared by the network and the weight-free interpolator.

Everything here is differentiable torch on NCHW tensors: backward warping, the intermediate-flow
approximation of the paper (eq. 4) and the visibility-weighted fusion (eq. 1).

How a warp turns pixel flow into a ``grid_sample`` grid, pads, and guards fusion's division is a
``WarpConvention``. Weights are trained under one convention and only reproduce their results under it, so a
model carries its convention and every checkpoint records it (``model.checkpoint``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from slomo_core.errors import CheckpointError


@dataclass(frozen=True)
class WarpConvention:
    """How a backward warp samples and how fusion divides; one value per trained set of weights.

    * ``denominator``: ``"size_minus_one"`` normalises x to ``2x/(W-1) - 1``, ``"size"`` to ``2(x/W - 0.5)``.
    * ``align_corners``: passed to ``grid_sample`` (how -1 and 1 map to pixel centres or outer edges).
    * ``padding``: ``grid_sample``'s padding mode outside the frame (``"border"`` or ``"zeros"``).
    * ``fusion_eps``: added to fusion's denominator ``(1-t) V_t0 + t V_t1``.
    """

    name: str
    denominator: Literal["size_minus_one", "size"]
    align_corners: bool
    padding: Literal["border", "zeros"]
    fusion_eps: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for weight cards, e.g. ``public: 2(x/W - 0.5), align_corners=False, zeros padding, fusion eps 0``."""
        scale = "2x/(W-1) - 1" if self.denominator == "size_minus_one" else "2(x/W - 0.5)"
        return (f"{self.name}: {scale}, align_corners={self.align_corners}, {self.padding} padding, "
                f"fusion eps {self.fusion_eps:g}")

    @classmethod
    def from_dict(cls, data: Any) -> WarpConvention:
        """Validated: a checkpoint whose convention this code cannot run fails in one line."""
        try:
            convention = cls(
                name=str(data["name"]), denominator=data["denominator"], align_corners=bool(data["align_corners"]),
                padding=data["padding"], fusion_eps=float(data["fusion_eps"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"unreadable warp convention {data!r} ({type(exc).__name__}: {exc})") from None
        if convention.denominator not in ("size_minus_one", "size") or convention.padding not in ("border", "zeros"):
            raise CheckpointError(f"unknown warp convention {data!r}")
        return convention


# slomo's own: exact pixel centres (an integer shift is recovered exactly), border clamping, a guarded division.
# The shipped weights and everything slomo trained before conventions were recorded use it; so does DIS.
SLOMO_WARP = WarpConvention("slomo", denominator="size_minus_one", align_corners=True, padding="border",
                            fusion_eps=1e-6)
# The public re-implementation's ``backWarp`` on torch >= 1.3 (``grid_sample``'s default align_corners=False,
# zero padding) and its fusion without epsilon: what public ``state_dictFC``/``state_dictAT`` files expect.
PUBLIC_WARP = WarpConvention("public", denominator="size", align_corners=False, padding="zeros", fusion_eps=0.0)
WARP_CONVENTIONS: dict[str, WarpConvention] = {c.name: c for c in (SLOMO_WARP, PUBLIC_WARP)}


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
    eps: float = SLOMO_WARP.fusion_eps,
) -> torch.Tensor:
    """I_t = ((1-t) V_t0 g(I0) + t V_t1 g(I1)) / ((1-t) V_t0 + t V_t1 + eps)  (paper eq. 1).

    ``eps`` is the model's ``WarpConvention.fusion_eps`` (0 in the public code, whose visibilities are a
    sigmoid and its complement, so the denominator never vanishes for t inside (0, 1)).
    """
    t = _as_batch_times(t, warped0)
    w0 = (1 - t) * visibility0
    w1 = t * visibility1
    return (w0 * warped0 + w1 * warped1) / (w0 + w1 + eps)
