"""How a backward warp turns pixel flow into samples and how fusion divides: one value per set of weights.

Weights are trained under one convention and only reproduce their results under it, so a model carries its
convention and every checkpoint records it (``model.checkpoint``). Plain data, no torch: the weight-free
interpolator and the settings read it without loading the network's stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from slomo_core.errors import CheckpointError


@dataclass(frozen=True)
class WarpConvention:
    """How a backward warp samples and how fusion divides; one value per trained set of weights.

    * ``denominator``: ``"size_minus_one"`` normalises x to ``2x/(W-1) - 1``, ``"size"`` to ``2(x/W - 0.5)``.
    * ``align_corners``: passed to ``grid_sample`` (how -1 and 1 map to pixel centres or outer edges).
    * ``padding``: ``grid_sample``'s padding mode outside the frame (``"border"`` or ``"zeros"``).
    * ``fusion_eps``: added to fusion's denominator ``(1-t) V_t0 + t V_t1``.
    """

    name: str
    denominator: Literal["size_minus_one", "size"]
    align_corners: bool
    padding: Literal["border", "zeros"]
    fusion_eps: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for weight cards, e.g. ``public: 2(x/W - 0.5), align_corners=False, zeros padding, fusion eps 0``."""
        scale = "2x/(W-1) - 1" if self.denominator == "size_minus_one" else "2(x/W - 0.5)"
        return (f"{self.name}: {scale}, align_corners={self.align_corners}, {self.padding} padding, "
                f"fusion eps {self.fusion_eps:g}")

    @classmethod
    def from_dict(cls, data: Any) -> WarpConvention:
        """Validated: a checkpoint whose convention this code cannot run fails in one line."""
        try:
            convention = cls(
                name=str(data["name"]), denominator=data["denominator"], align_corners=bool(data["align_corners"]),
                padding=data["padding"], fusion_eps=float(data["fusion_eps"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"unreadable warp convention {data!r} ({type(exc).__name__}: {exc})") from None
        if convention.denominator not in ("size_minus_one", "size") or convention.padding not in ("border", "zeros"):
            raise CheckpointError(f"unknown warp convention {data!r}")
        return convention


# slomo's own: exact pixel centres (an integer shift is recovered exactly), border clamping, a guarded division.
# The shipped weights and everything slomo trained before conventions were recorded use it; so does DIS.
SLOMO_WARP = WarpConvention("slomo", denominator="size_minus_one", align_corners=True, padding="border",
                            fusion_eps=1e-6)
# The public re-implementation's ``backWarp`` on torch >= 1.3 (``grid_sample``'s default align_corners=False,
# zero padding) and its fusion without epsilon: what public ``state_dictFC``/``state_dictAT`` files expect.
PUBLIC_WARP = WarpConvention("public", denominator="size", align_corners=False, padding="zeros", fusion_eps=0.0)
WARP_CONVENTIONS: dict[str, WarpConvention] = {c.name: c for c in (SLOMO_WARP, PUBLIC_WARP)}
