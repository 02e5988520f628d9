"""Record what the interpolators output today, so a change to how frames travel can be proven bit-identical.

    PYTHONPATH=. python tests/data/engine/make_golden.py     # rewrites engine_golden.npz

Inputs are seeded textured frames with real motion (a shifted noise image), at sizes that need padding,
and one size the pixel budget tiles. Run it only from a commit whose outputs are the reference.
"""

from __future__ import annotations

import platform
from pathlib import Path

import cv2
import numpy as np
import torch

from slomo_core.interp.base import PairRequest
from slomo_core.interp.dis import DISInterpolator
from slomo_core.interp.network import InferenceSettings, SuperSloMoInterpolator
from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig

HERE = Path(__file__).resolve().parent
WIDTHS = (4, 8, 8, 8, 8, 8)
TIMES = ((0.25, 0.5, 0.75), (0.5,), (0.125, 0.875))
# name -> (InferenceSettings, frame height, width)
NETWORK_CASES = {
    "superslomo_channels_last": (InferenceSettings(device="cpu", dtype="fp32", channels_last=True), 40, 70),
    "superslomo_contiguous": (InferenceSettings(device="cpu", dtype="fp32", channels_last=False), 40, 70),
    "superslomo_small_budget": (InferenceSettings(device="cpu", dtype="fp32", max_batch_pixels=96 * 96 * 2), 40, 70),
    "superslomo_tiled": (InferenceSettings(device="cpu", dtype="fp32", max_batch_pixels=128 * 128, tile_overlap=16),
                         100, 130),
}


def textured_frames(count: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """A smooth random texture moving 3 px right and 2 px down per frame (real motion for the flows)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height + 2 * count + 8, width + 3 * count + 8, 3)).astype(np.float32)
    base = cv2.GaussianBlur(base, (0, 0), 2.0) * 3 - 256  # smooth blobs, full contrast (and compressible)
    base = base.clip(0, 255)
    return [np.ascontiguousarray(base[2 * (count - i) : 2 * (count - i) + height, 3 * (count - i) : 3 * (count - i) + width]
                                 .round().astype(np.uint8)) for i in range(count)]


def requests_for(height: int, width: int) -> list[PairRequest]:
    frames = textured_frames(len(TIMES) + 1, height, width)
    return [PairRequest(frames[i], frames[i + 1], times) for i, times in enumerate(TIMES)]


def network(seed: int = 0) -> SuperSloMo:
    torch.manual_seed(seed)
    return SuperSloMo(SuperSloMoConfig(widths=WIDTHS))


def outputs(interpolator, requests: list[PairRequest]) -> np.ndarray:
    """Every output frame of one call, stacked in request order."""
    return np.stack([frame for pair in interpolator.interpolate(requests) for frame in pair])


def main() -> int:
    record = {"torch": np.array(torch.__version__), "machine": np.array(platform.machine())}
    for name, (settings, height, width) in NETWORK_CASES.items():
        record[name] = outputs(SuperSloMoInterpolator(network(), settings), requests_for(height, width))
    record["dis"] = outputs(DISInterpolator(), requests_for(40, 70))
    np.savez_compressed(HERE / "engine_golden.npz", **record)
    print({k: v.shape for k, v in record.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
