"""``superslomo-dis`` as a FrameInterpolator: DIS flows on the host, the interpolation U-Net on the engine.

The flows are the ``dis`` interpolator's own (same function, same settings, one DIS solver per flow thread,
the call's pairs spread over them); everything after them is the network engine's path (``interp.network``):
uint8 transfers, every time of every pair batched, padding, tiling, device and dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        """Every pair's DIS flows (both directions of every pair queued at once on the ``dis`` flow threads), on the device."""
        flows = self.dis.flow_tensors([(r.frame0, r.frame1) for r in requests])
        return tuple(upload(f, self.device) for f in flows)
