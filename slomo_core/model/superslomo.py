"""The Super SloMo network (Jiang et al., CVPR 2018): two U-Nets around the shared synthesis.

Two architectures share this module:
- ``superslomo``: the paper's, flow computation ``UNet(6, 4)`` then arbitrary-time flow interpolation
  ``UNet(20, 5)``;
- ``superslomo-dis``: the weight-free DIS optical flow (``interp.dis``, both directions, on the host) as the
  first stage and only the paper's second U-Net, learned: it refines the intermediate flows and predicts
  visibility (eqs. 2-4 and the fusion unchanged). Its last layer starts at zero, so an untrained hybrid is
  exactly the plain average of the two DIS warps, and training learns corrections, cheap enough for a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import nn

from slomo_core.model.synthesis import approximate_intermediate_flows, backward_warp, fuse
from slomo_core.model.unet import FULL_WIDTHS, UNet
from slomo_core.model.warp_convention import SLOMO_WARP, WarpConvention

# Input normalisation of the public re-implementation (mean subtracted, std 1), RGB in [0, 1].
REFERENCE_MEAN: tuple[float, float, float] = (0.429, 0.431, 0.397)
REFERENCE_STD: tuple[float, float, float] = (1.0, 1.0, 1.0)
# The architectures a checkpoint may hold (recorded in its metadata; see the module docstring).
ARCH_SUPERSLOMO = "superslomo"
ARCH_DIS_HYBRID = "superslomo-dis"
ARCHITECTURES: tuple[str, ...] = (ARCH_SUPERSLOMO, ARCH_DIS_HYBRID)
Architecture = Literal["superslomo", "superslomo-dis"]


@dataclass(frozen=True)
class SuperSloMoConfig:
    """Architecture, normalisation and warp convention; stored in checkpoints so a file describes itself.

    ``warp`` defaults to slomo's own convention (what slomo trains with); files in the public layout load
    with ``PUBLIC_WARP`` (``model.checkpoint``).
    """

    widths: tuple[int, ...] = FULL_WIDTHS
    mean: tuple[float, float, float] = REFERENCE_MEAN
    std: tuple[float, float, float] = REFERENCE_STD
    warp: WarpConvention = SLOMO_WARP
    arch: Architecture = ARCH_SUPERSLOMO

    @property
    def learns_flow(self) -> bool:
        """Whether the first stage is the flow U-Net (else flows come from DIS and are given to ``synthesize``)."""
        return self.arch == ARCH_SUPERSLOMO

    def to_dict(self) -> dict:
        data = {k: list(v) for k, v in asdict(self).items() if k not in ("warp", "arch")}
        data["warp"] = self.warp.to_dict()
        data["arch"] = self.arch
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SuperSloMoConfig:
        known = {k: tuple(v) for k, v in data.items() if k in cls.__dataclass_fields__ and k not in ("warp", "arch")}
        if "warp" in data:
            known["warp"] = WarpConvention.from_dict(data["warp"])
        if "arch" in data:
            known["arch"] = data["arch"]
        return cls(**known)


@dataclass
class IntermediateFrames:
    """What the network predicts for one batch of (pair, t) samples; extras serve the training losses."""

    frames: torch.Tensor
    flow_t0: torch.Tensor = field(repr=False)
    flow_t1: torch.Tensor = field(repr=False)
    visibility0: torch.Tensor = field(repr=False)


class SuperSloMo(nn.Module):
    """Flow computation ``UNet(6, 4)`` and arbitrary-time flow interpolation ``UNet(20, 5)``.

    Under ``arch="superslomo-dis"`` there is no flow U-Net (``flow_net`` is None): flows come from DIS
    and go straight to ``synthesize``; the interpolation U-Net's output layer starts at zero.

    Frames are RGB float tensors in [0, 1], NCHW, height and width multiples of 32. The U-Nets run in
    whatever dtype the module has (their inputs are assembled directly in it); flows, warping and fusion
    stay in fp32: warp coordinates need it (bf16 resolves 1/128 of the half-width, 7 pixels of a 1080p row;
    fp16 about one) and fusion's output must hold 8-bit levels, which bf16's 8-bit mantissa cannot.
    """

    def __init__(self, config: SuperSloMoConfig = SuperSloMoConfig()) -> None:
        super().__init__()
        self.config = config
        if config.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {config.arch!r} (choose from {', '.join(ARCHITECTURES)})")
        self.flow_net = UNet(6, 4, config.widths) if config.learns_flow else None
        self.interp_net = UNet(20, 5, config.widths)
        if not config.learns_flow:
            # Zero residuals and visibility logit 0 (V = 0.5 both ways): fusion is then (1-t) g0 + t g1.
            nn.init.zeros_(self.interp_net.conv3.weight)
            nn.init.zeros_(self.interp_net.conv3.bias)
        self.memory_format = torch.contiguous_format
        self._stats_on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.interp_net.conv1.weight.dtype

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Kept out of the module's buffers so a bf16 model still normalises in exact fp32; made once per
        # device, because building a tensor from Python values on a GPU makes the host wait for the stream.
        if like.device not in self._stats_on:
            mean = torch.tensor(self.config.mean, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(self.config.std, dtype=torch.float32).view(1, 3, 1, 1)
            self._stats_on[like.device] = (mean.to(like.device), std.to(like.device))
        return self._stats_on[like.device]

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(frames)
        return (frames.float() - mean) / std

    def _denormalize(self, frames: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(frames)
        return frames * std + mean

    def place(self, device: torch.device | str, dtype: torch.dtype, channels_last: bool) -> SuperSloMo:
        """Move to a device and compute dtype; channels_last speeds convolutions on CPUs and GPUs."""
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        return self.to(device=device, dtype=dtype, memory_format=self.memory_format)

    def _run(self, net: UNet, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """``net`` on its inputs concatenated along channels, written once in the compute dtype and layout
        (the same values as concatenating in fp32 and converting, without the fp32 copy)."""
        if torch.is_grad_enabled():  # training: a cat into a given tensor takes no part in autograd
            x = torch.cat(tuple(parts), dim=1).to(self.compute_dtype).contiguous(memory_format=self.memory_format)
            return net(x).float()
        n, _, h, w = parts[0].shape
        channels = sum(p.shape[1] for p in parts)
        x = torch.empty((n, channels, h, w), dtype=self.compute_dtype, device=parts[0].device,
                        memory_format=self.memory_format)
        return net(torch.cat(tuple(parts), dim=1, out=x)).float()

    def compute_flows(self, frame0: torch.Tensor, frame1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bidirectional flows F_0->1 and F_1->0 (pixels), once per pair."""
        if self.flow_net is None:
            raise ValueError(f"{self.config.arch} computes no flows itself: pass DIS flows to synthesize")
        out = self._run(self.flow_net, (self.normalize(frame0), self.normalize(frame1)))
        return out[:, :2], out[:, 2:4]

    def synthesize(
        self,
        frame0: torch.Tensor,
        frame1: torch.Tensor,
        flow01: torch.Tensor,
        flow10: torch.Tensor,
        t: torch.Tensor,
    ) -> IntermediateFrames:
        """Frames at times ``t`` (one per batch element; pair tensors already repeated to match)."""
        i0, i1 = self.normalize(frame0), self.normalize(frame1)
        warp = self.config.warp
        flow_t0, flow_t1 = approximate_intermediate_flows(flow01, flow10, t)
        g0 = backward_warp(i0, flow_t0, warp)
        g1 = backward_warp(i1, flow_t1, warp)
        out = self._run(self.interp_net, (i0, i1, flow01, flow10, flow_t1, flow_t0, g1, g0))
        flow_t0 = flow_t0 + out[:, 0:2]
        flow_t1 = flow_t1 + out[:, 2:4]
        visibility0 = torch.sigmoid(out[:, 4:5])
        warped0 = backward_warp(i0, flow_t0, warp)
        warped1 = backward_warp(i1, flow_t1, warp)
        frames = self._denormalize(fuse(warped0, warped1, visibility0, 1 - visibility0, t, eps=warp.fusion_eps))
        return IntermediateFrames(frames, flow_t0, flow_t1, visibility0)

    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor, t: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """Convenience: every t for every pair, shape (pairs * len(t), 3, H, W), pair-major."""
        t = torch.as_tensor(t, dtype=torch.float32, device=frame0.device).flatten()
        flow01, flow10 = self.compute_flows(frame0, frame1)
        n, k = frame0.shape[0], t.numel()

        def rep(x: torch.Tensor) -> torch.Tensor:
            return x.repeat_interleave(k, dim=0)

        times = t.repeat(n)
        return self.synthesize(rep(frame0), rep(frame1), rep(flow01), rep(flow10), times).frames
