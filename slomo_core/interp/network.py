"""The Super SloMo network as a FrameInterpolator: batching, padding, tiling, device and dtype.

One flow pass per pair; every requested time of every pair in the call is synthesised from those flows in
batches bounded by a pixel budget, so memory stays flat whatever the resolution. Frames larger than the
budget are cut into overlapping tiles whose results are feathered together. Frames are padded to a
multiple of 32 by edge replication and cropped back: never resized.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from slomo_core.errors import ConfigError
from slomo_core.interp.base import PairRequest, full_scale
from slomo_core.model.superslomo import SuperSloMo
from slomo_core.runtime import available_host_memory, cpu_has_native_bf16, resolve_device, resolve_dtype

log = logging.getLogger(__name__)

ALIGN = 32
# Measured peak activation memory of one fp32 synthesis pass: ~1.2 KB per padded pixel (1 Mpx, CPU).
BYTES_PER_PIXEL = 1300
MAX_AUTO_PIXELS = 1 << 23  # beyond ~8 Mpx per pass there is nothing left to gain in throughput


def auto_pixel_budget(device: torch.device, memory_fraction: float = 0.5) -> int:
    """Pixels per pass that fit in ``memory_fraction`` of the device's free memory (at least 256x256)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = available_host_memory()
    return int(max(256 * 256, min(MAX_AUTO_PIXELS, free * memory_fraction // BYTES_PER_PIXEL)))


@dataclass(frozen=True)
class InferenceSettings:
    """How to run the network. channels_last measured 1.3x faster on a 2-core AVX2 CPU (bench/interpolators.py);
    bf16 pays off only where the hardware has it (GPUs, CPUs with AVX512-BF16/AMX), elsewhere it is far slower."""

    device: str = "auto"
    dtype: str = "auto"  # bf16 where the hardware has it natively, else fp32 (see resolve_inference_dtype)
    channels_last: bool = True
    compile: bool = False  # torch.compile both U-Nets (Inductor): slower first batch, faster after
    # Pixels (after padding) per forward pass, bounding activation memory; None sizes it from free memory.
    max_batch_pixels: int | None = None
    tile_overlap: int = 64


def pad_to_multiple(frames: torch.Tensor, multiple: int = ALIGN) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad the bottom and right edges up to a multiple; returns the original (height, width)."""
    h, w = frames.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        frames = F.pad(frames, (0, pw, 0, ph), mode="replicate")
    return frames, (h, w)


def crop_to(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return frames[..., : size[0], : size[1]]


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - 2 * overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _feather(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1 inside, linear ramps over the overlap where a neighbouring tile takes over."""
    ramp = torch.ones(length)
    n = min(overlap, length // 2)
    if n > 0:
        edge = (torch.arange(n, dtype=torch.float32) + 1) / (n + 1)
        if not at_start:
            ramp[:n] = edge
        if not at_end:
            ramp[-n:] = edge.flip(0)
    return ramp


def resolve_inference_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA GPUs that support it (fp16 on older ones) and on CPUs with AVX512-BF16/AMX;
    fp32 elsewhere, where bf16 is emulated and several times slower (measured 7x on an AVX2 EPYC)."""
    if name != "auto":
        return resolve_dtype(name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


class SuperSloMoInterpolator:
    """Runs a loaded SuperSloMo model on PairRequests (uint8 or uint16 RGB numpy in, the same dtype out)."""

    name = "superslomo"

    def __init__(
        self, model: SuperSloMo, settings: InferenceSettings = InferenceSettings(), weights_sha256: str | None = None
    ) -> None:
        if settings.max_batch_pixels is not None and settings.max_batch_pixels < ALIGN * ALIGN * 16:
            raise ConfigError(f"max_batch_pixels {settings.max_batch_pixels} is too small (minimum {ALIGN * ALIGN * 16})")
        self.settings = settings
        self.weights_sha256 = weights_sha256  # recorded in manifests: which weights made a video
        self.device = resolve_device(settings.device)
        self.dtype = resolve_inference_dtype(settings.dtype, self.device)
        self.max_batch_pixels = settings.max_batch_pixels or auto_pixel_budget(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        elif self.dtype == torch.bfloat16 and not cpu_has_native_bf16():
            log.warning("bf16 on a CPU without native bf16 instructions is much slower than fp32")
        self.model = model.eval().place(self.device, self.dtype, settings.channels_last)
        if settings.compile:
            # In place: the state dict keeps its names. Shapes are static per video, so few recompiles.
            self.model.flow_net.compile(dynamic=False)
            self.model.interp_net.compile(dynamic=False)

    @torch.inference_mode()
    def interpolate(self, requests: Sequence[PairRequest]) -> list[list[np.ndarray]]:
        if not requests:
            return []
        shape = requests[0].frame0.shape
        for r in requests:
            if r.frame0.shape != shape or r.frame1.shape != shape or len(shape) != 3 or shape[2] != 3:
                raise ValueError("all frames of one call must be HxWx3 and the same size")
            if any(not 0.0 < t < 1.0 for t in r.times):
                raise ValueError(f"times must lie strictly inside (0, 1), got {r.times}")
        dtype = requests[0].frame0.dtype
        if any(r.frame0.dtype != dtype or r.frame1.dtype != dtype for r in requests):
            raise ValueError("all frames of one call must have one dtype")
        frames0 = self._to_tensor([r.frame0 for r in requests])
        frames1 = self._to_tensor([r.frame1 for r in requests])
        times = [tuple(float(t) for t in r.times) for r in requests]
        h, w = shape[:2]
        padded_pixels = (h + (-h) % ALIGN) * (w + (-w) % ALIGN)
        if padded_pixels > self.max_batch_pixels:
            outputs = self._run_tiled(frames0, frames1, times)
        else:
            outputs = self._run(frames0, frames1, times)
        return self._to_numpy(outputs, times, requests[0].frame0)

    def _to_tensor(self, images: list[np.ndarray]) -> torch.Tensor:
        # uint8 (uint16 for deep sources) travels to the device (4x / 2x less traffic than float), converts there.
        batch = torch.from_numpy(np.stack(images)).to(self.device, non_blocking=True)
        return batch.permute(0, 3, 1, 2).float().div_(full_scale(images[0]))

    def _to_numpy(
        self, outputs: list[torch.Tensor], times: list[tuple[float, ...]], like: np.ndarray
    ) -> list[list[np.ndarray]]:
        """Back to the input's dtype: 8-bit sources stay 8-bit, 16-bit RGB stays 16-bit."""
        white = full_scale(like)
        result: list[list[np.ndarray]] = []
        for frames, pair_times in zip(outputs, times):
            if like.dtype == np.uint8:
                as_uint8 = frames.clamp_(0.0, 1.0).mul_(white).round_().to(torch.uint8)
                host = as_uint8.permute(0, 2, 3, 1).contiguous().cpu().numpy()
            else:  # in fp32: bf16 would round 16-bit levels to 8 significant bits
                scaled = frames.float().clamp_(0.0, 1.0).mul_(white).round_().to(torch.int32)
                host = scaled.permute(0, 2, 3, 1).contiguous().cpu().numpy().astype(like.dtype)
            result.append([host[k] for k in range(len(pair_times))])
        return result

    def _run(self, frames0: torch.Tensor, frames1: torch.Tensor, times: list[tuple[float, ...]]) -> list[torch.Tensor]:
        """Untiled: returns per pair a (len(times), 3, H, W) float tensor in [0, 1]-ish."""
        padded0, size = pad_to_multiple(frames0)
        padded1, _ = pad_to_multiple(frames1)
        per_pass = max(1, self.max_batch_pixels // (padded0.shape[-1] * padded0.shape[-2]))
        flows01, flows10 = [], []
        for s in range(0, padded0.shape[0], per_pass):
            f01, f10 = self.model.compute_flows(padded0[s : s + per_pass], padded1[s : s + per_pass])
            flows01.append(f01)
            flows10.append(f10)
        flow01, flow10 = torch.cat(flows01), torch.cat(flows10)
        pair_index = torch.tensor([p for p, ts in enumerate(times) for _ in ts], device=self.device, dtype=torch.long)
        t_all = torch.tensor([t for ts in times for t in ts], device=self.device, dtype=torch.float32)
        pieces = []
        for s in range(0, t_all.numel(), per_pass):
            idx = pair_index[s : s + per_pass]
            out = self.model.synthesize(
                padded0[idx], padded1[idx], flow01[idx], flow10[idx], t_all[s : s + per_pass]
            ).frames
            pieces.append(crop_to(out, size))
        stacked = torch.cat(pieces) if pieces else padded0.new_zeros((0, 3, *size))
        counts = [len(ts) for ts in times]
        return list(torch.split(stacked, counts))

    def _run_tiled(
        self, frames0: torch.Tensor, frames1: torch.Tensor, times: list[tuple[float, ...]]
    ) -> list[torch.Tensor]:
        """Overlapping square tiles that each fit the budget, blended with linear feathering."""
        h, w = frames0.shape[-2:]
        tile = max(ALIGN * 4, int(self.max_batch_pixels**0.5) // ALIGN * ALIGN)
        overlap = min(self.settings.tile_overlap, tile // 4)
        tile_h, tile_w = min(tile, h), min(tile, w)
        ys, xs = _tile_starts(h, tile_h, overlap), _tile_starts(w, tile_w, overlap)
        results = []
        for p, pair_times in enumerate(times):
            acc = frames0.new_zeros((len(pair_times), 3, h, w))
            weight = frames0.new_zeros((1, 1, h, w))
            for y in ys:
                wy = _feather(tile_h, overlap, y == 0, y + tile_h >= h).to(self.device)
                for x in xs:
                    wx = _feather(tile_w, overlap, x == 0, x + tile_w >= w).to(self.device)
                    window = (slice(None), slice(None), slice(y, y + tile_h), slice(x, x + tile_w))
                    (out,) = self._run(frames0[p : p + 1][window], frames1[p : p + 1][window], [pair_times])
                    mask = (wy[:, None] * wx[None, :])[None, None]
                    acc[window] += out * mask
                    weight[window] += mask
            results.append(acc / weight)
        return results
