"""How frames travel between host and device: uint8 both ways, pinned staging on CUDA, one copy per direction.

Deeper sources travel as uint16 RGB (half of float32's bytes) and come back as uint16. uint8 is a quarter
of float32's bytes, and converting on the device keeps the host's cores for decode and
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


_TORCH_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.uint16}


def white_of(frames: torch.Tensor) -> float:
    """The value of white for frames of this integer dtype: 255 (uint8) or 65535 (uint16)."""
    return 255.0 if frames.dtype == torch.uint8 else 65535.0


def upload_frames(images: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """N HxWx3 uint8 (or uint16) arrays as an N x 3 x H x W tensor of that dtype on ``device`` (NHWC in
    memory, a view)."""
    shape = (len(images), *images[0].shape)
    if _pinned(device):
        staging = torch.empty(shape, dtype=_TORCH_DTYPES[images[0].dtype], pin_memory=True)
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
    """uint8 (uint16) frames as float32 in [0, 1], converted where they are (on the device)."""
    return frames.float().div_(white_of(frames))


def unit_float_to_levels(frames: torch.Tensor, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """N x 3 x H x W floats in [0, 1] (overwritten) as N x H x W x 3 ``dtype`` (uint8 or uint16), still on
    their device. 16-bit levels are scaled in float32: bf16 would round them to 8 significant bits."""
    if dtype == torch.uint8:
        return frames.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)
    levels = frames.float().clamp_(0.0, 1.0).mul_(65535.0).round_().to(torch.int32)
    return levels.to(torch.uint16).permute(0, 2, 3, 1)


def download_frames(frames: torch.Tensor) -> np.ndarray:
    """N x H x W x 3 uint8 (uint16) device frames as one host array, after a single wait for the device."""
    if _pinned(frames.device):
        host = torch.empty(frames.shape, dtype=frames.dtype, pin_memory=True)
        host.copy_(frames, non_blocking=True)
        torch.cuda.current_stream(frames.device).synchronize()
        return host.numpy()
    return frames.contiguous().numpy()
