"""The Super SloMo network as a FrameInterpolator: batching, padding, tiling, device and dtype.

One flow pass per pair; every requested time of every pair in the call is synthesised from those flows in
batches bounded by a pixel budget, so memory stays flat whatever the resolution. Frames larger than the
budget are cut into overlapping tiles whose results are feathered together. Frames are padded to a
multiple of 32 by edge replication and cropped back: never resized.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from slomo_core.errors import ConfigError
from slomo_core.interp.base import PairRequest
from slomo_core.interp.inference import InferenceSettings
from slomo_core.interp.transfer import download_frames, unit_float, unit_float_to_levels, upload, upload_frames
from slomo_core.model.superslomo import SuperSloMo
from slomo_core.runtime import available_host_memory, cpu_has_native_bf16, resolve_device, resolve_dtype

log = logging.getLogger(__name__)

ALIGN = 32
# Measured peak activation memory of one fp32 synthesis pass: ~1.2 KB per padded pixel (1 Mpx, CPU).
BYTES_PER_PIXEL = 1300
MAX_AUTO_PIXELS = 1 << 23  # beyond ~8 Mpx per pass there is nothing left to gain in throughput
Flows = tuple[torch.Tensor, torch.Tensor]  # F_0->1, F_1->0: N x 2 x H x W pixels


def auto_pixel_budget(device: torch.device, memory_fraction: float = 0.5) -> int:
    """Pixels per pass that fit in ``memory_fraction`` of the device's free memory (at least 256x256)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = available_host_memory()
    return int(max(256 * 256, min(MAX_AUTO_PIXELS, free * memory_fraction // BYTES_PER_PIXEL)))


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
            # In place: the state dict keeps its names. Dynamic shapes, so each U-Net compiles once per actor
            # (plus one specialisation for a batch of 1). Static shapes recompiled for every batch size a call
            # produced (a chunk's last call, the last pass of a budget): 90-400 s each for a tiny network on a
            # loaded 2-core CPU; on an H200 the full network had not finished compiling after 100 s.
            # Inductor's on-disk cache (TORCHINDUCTOR_CACHE_DIR) lets later actors on a node reuse the kernels.
            if self.model.flow_net is not None:
                self.model.flow_net.compile(dynamic=True)
            self.model.interp_net.compile(dynamic=True)

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
        flows = self.given_flows(requests)
        frames0 = self._to_device([r.frame0 for r in requests])
        frames1 = self._to_device([r.frame1 for r in requests])
        times = [tuple(float(t) for t in r.times) for r in requests]
        h, w = shape[:2]
        padded_pixels = (h + (-h) % ALIGN) * (w + (-w) % ALIGN)
        if padded_pixels > self.max_batch_pixels:
            stacked = torch.cat(self._run_tiled(frames0, frames1, times, flows))
        else:
            stacked = self._run_stacked(frames0, frames1, times, flows)
        return self._to_numpy(stacked, times, torch.uint8 if dtype == np.uint8 else torch.uint16)

    def given_flows(self, requests: Sequence[PairRequest]) -> Flows | None:
        """Flows F_0->1, F_1->0 (N x 2 x H x W pixels, on the device) from outside the network, or None: the
        paper's network computes its own; ``superslomo-dis`` overrides this with DIS's (``interp.hybrid``)."""
        return None

    def _to_device(self, images: list[np.ndarray]) -> torch.Tensor:
        """uint8 (uint16 for deep sources) travels to the device (a quarter / half of float's bytes) and
        becomes float in [0, 1] there."""
        return unit_float(upload_frames(images, self.device))

    def _to_numpy(self, stacked: torch.Tensor, times: list[tuple[float, ...]],
                  dtype: torch.dtype) -> list[list[np.ndarray]]:
        """Every frame of the call (pair-major) converted to the input's dtype on the device (8-bit sources stay
        8-bit, 16-bit RGB stays 16-bit) and brought back in one copy."""
        host = download_frames(unit_float_to_levels(stacked, dtype))
        result: list[list[np.ndarray]] = []
        start = 0
        for pair_times in times:
            result.append([host[start + k] for k in range(len(pair_times))])
            start += len(pair_times)
        return result

    def _run(self, frames0: torch.Tensor, frames1: torch.Tensor, times: list[tuple[float, ...]],
             flows: Flows | None = None) -> list[torch.Tensor]:
        """Untiled: returns per pair a (len(times), 3, H, W) float tensor in [0, 1]-ish."""
        return list(torch.split(self._run_stacked(frames0, frames1, times, flows), [len(ts) for ts in times]))

    def _run_stacked(self, frames0: torch.Tensor, frames1: torch.Tensor, times: list[tuple[float, ...]],
                     flows: Flows | None = None) -> torch.Tensor:
        """Untiled: every time of every pair, pair-major, as one (sum of len(times), 3, H, W) float tensor.
        ``flows``: given flows (padded here like the frames) instead of the flow network's."""
        padded0, size = pad_to_multiple(frames0)
        padded1, _ = pad_to_multiple(frames1)
        per_pass = max(1, self.max_batch_pixels // (padded0.shape[-1] * padded0.shape[-2]))
        if flows is not None:
            flow01, flow10 = (pad_to_multiple(f)[0] for f in flows)
        else:
            flows01, flows10 = [], []
            for s in range(0, padded0.shape[0], per_pass):
                f01, f10 = self.model.compute_flows(padded0[s : s + per_pass], padded1[s : s + per_pass])
                flows01.append(f01)
                flows10.append(f10)
            flow01, flow10 = torch.cat(flows01), torch.cat(flows10)
        pair_index = upload(torch.tensor([p for p, ts in enumerate(times) for _ in ts], dtype=torch.long), self.device)
        t_all = upload(torch.tensor([t for ts in times for t in ts], dtype=torch.float32), self.device)
        pieces = []
        for s in range(0, t_all.numel(), per_pass):
            idx = pair_index[s : s + per_pass]
            out = self.model.synthesize(
                padded0[idx], padded1[idx], flow01[idx], flow10[idx], t_all[s : s + per_pass]
            ).frames
            pieces.append(crop_to(out, size))
        return torch.cat(pieces) if pieces else padded0.new_zeros((0, 3, *size))

    def _run_tiled(
        self, frames0: torch.Tensor, frames1: torch.Tensor, times: list[tuple[float, ...]], flows: Flows | None = None
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
                wy = upload(_feather(tile_h, overlap, y == 0, y + tile_h >= h), self.device)
                for x in xs:
                    wx = upload(_feather(tile_w, overlap, x == 0, x + tile_w >= w), self.device)
                    window = (slice(None), slice(None), slice(y, y + tile_h), slice(x, x + tile_w))
                    given = None if flows is None else tuple(f[p : p + 1][window] for f in flows)
                    (out,) = self._run(frames0[p : p + 1][window], frames1[p : p + 1][window], [pair_times], given)
                    mask = (wy[:, None] * wx[None, :])[None, None]
                    acc[window] += out * mask
                    weight[window] += mask
            results.append(acc / weight)
        return results
