"""How frames travel between host and device: uint8 both ways, pinned staging on CUDA, one copy per direction.

uint8 is a quarter of float32's bytes, and converting on the device keeps the host's cores for decode and
encode. A copy from pageable host memory makes the host wait for the whole stream first; from pinned
(page-locked) memory it is queued behind the compute like any kernel, so a call waits for the GPU once, when
its results are read. Pinned blocks come from torch's caching host allocator: a block goes back to the cache
only when the copies queued on it are done and no array returned from it is alive, so results stay valid
for as long as the caller (an encoder thread) holds them. On a CPU every step here is the plain one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _pinned(device: torch.device) -> bool:
    return device.type == "cuda"


def upload_frames(images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """N HxWx3 uint8 arrays as an N x 3 x H x W uint8 tensor on ``device`` (NHWC in memory, a view)."""
    shape = (len(images), *images[0].shape)
    if _pinned(device):
        staging = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        np.stack(images, out=staging.numpy())  # one host copy, straight into page-locked memory
        batch = staging.to(device, non_blocking=True)
    else:
        batch = torch.from_numpy(np.stack(images)).to(device)
    return batch.permute(0, 3, 1, 2)


def upload(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor (times, indices) on ``device`` without making the host wait for the stream."""
    if _pinned(device):
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device)


def unit_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames as float32 in [0, 1], converted where they are (on the device)."""
    return frames.float().div_(255.0)


def unit_float_to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W floats in [0, 1] (overwritten) as N x H x W x 3 uint8, still on their device."""
    return frames.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)


def download_frames(frames: torch.Tensor) -> np.ndarray:
    """N x H x W x 3 uint8 device frames as one host array, after a single wait for the device."""
    if _pinned(frames.device):
        host = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(frames, non_blocking=True)
        torch.cuda.current_stream(frames.device).synchronize()
        return host.numpy()
    return frames.contiguous().numpy()
