"""The engine's uint8 transfer path gives exactly the frames the interpolators gave before it.

tests/data/engine/engine_golden.npz was recorded (make_golden.py there) from the commit before frames moved
to uint8 uploads, device-side conversion and one download per call. fp32 on a CPU must reproduce it bit for
bit, for the network (layouts, a small pixel budget, tiling). DIS no longer goes through this path (its synthesis
runs on the host, next to its flows), so its recorded frames are not checked here; tests/test_dis.py checks its
frames against known motion.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from slomo_core.interp.network import SuperSloMoInterpolator
from slomo_core.interp.transfer import download_frames, unit_float, unit_float_to_levels, upload_frames
from tests.data.engine.make_golden import NETWORK_CASES, network, outputs, requests_for

GOLDEN = Path(__file__).parent / "data" / "engine" / "engine_golden.npz"


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        recorded = {key: data[key] for key in data.files}
    if str(recorded["torch"]) != torch.__version__ or str(recorded["machine"]) != platform.machine():
        pytest.skip(f"golden frames recorded with torch {recorded['torch']} on {recorded['machine']}: "
                    "float kernels of another build may round differently")
    return recorded


@pytest.mark.parametrize("case", list(NETWORK_CASES))
def test_network_frames_are_bit_identical_to_before(golden: dict, case: str) -> None:
    settings, height, width = NETWORK_CASES[case]
    made = outputs(SuperSloMoInterpolator(network(), settings), requests_for(height, width))
    assert made.dtype == np.uint8 and made.shape == golden[case].shape
    assert np.array_equal(made, golden[case]), f"{case}: {np.count_nonzero(made != golden[case])} values differ"


def test_round_trip_keeps_every_level() -> None:
    levels = np.arange(256, dtype=np.uint8)
    image = np.stack([np.tile(levels, (4, 1)), np.tile(levels[::-1], (4, 1)), np.full((4, 256), 7, np.uint8)], axis=2)
    on_device = upload_frames([image, image[::-1].copy()], torch.device("cpu"))
    assert on_device.dtype == torch.uint8 and on_device.shape == (2, 3, 4, 256)
    back = download_frames(unit_float_to_levels(unit_float(on_device)))
    assert np.array_equal(back[0], image) and np.array_equal(back[1], image[::-1])


def test_outputs_are_clamped_not_wrapped() -> None:
    frames = torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.7]).view(1, 1, 1, 5).expand(1, 3, 1, 5).clone()
    assert download_frames(unit_float_to_levels(frames))[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]
