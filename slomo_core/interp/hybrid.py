"""``superslomo-dis`` as a FrameInterpolator: DIS flows on the host, the interpolation U-Net on the engine.

The flows are the ``dis`` interpolator's own (same function, same settings, one DIS solver per flow thread,
the call's pairs spread over them); everything after them is the network engine's path (``interp.network``):
uint8 transfers, every time of every pair batched, padding, tiling, device and dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from slomo_core.errors import CheckpointError
from slomo_core.interp.base import PairRequest
from slomo_core.interp.dis import DISInterpolator
from slomo_core.interp.inference import InferenceSettings
from slomo_core.interp.network import Flows, SuperSloMoInterpolator
from slomo_core.interp.transfer import upload
from slomo_core.model.superslomo import SuperSloMo


class DISSuperSloMoInterpolator(SuperSloMoInterpolator):
    """DIS flows both ways refined, and fused with learned visibility, by the paper's interpolation U-Net."""

    name = "superslomo-dis"

    def __init__(self, model: SuperSloMo, settings: InferenceSettings = InferenceSettings(),
                 weights_sha256: str | None = None, dis: DISInterpolator | None = None) -> None:
        if model.config.learns_flow:
            raise CheckpointError(f"superslomo-dis needs a superslomo-dis model, got {model.config.arch}")
        super().__init__(model, settings, weights_sha256)
        self.dis = dis or DISInterpolator()

    def given_flows(self, requests: Sequence[PairRequest]) -> Flows:
        """Every pair's DIS flows, computed on ``dis.flow_threads`` host threads, as device tensors."""
        with ThreadPoolExecutor(self.dis.flow_threads, thread_name_prefix="slomo-dis-flow") as pool:
            flows = list(pool.map(lambda r: self.dis.compute_flows(r.frame0, r.frame1), requests))
        return tuple(upload(torch.from_numpy(np.stack([f[d] for f in flows])), self.device).permute(0, 3, 1, 2)
                     for d in (0, 1))
