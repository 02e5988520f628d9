"""Builds the interpolator a user names; the one place that knows every model."""

from __future__ import annotations

from slomo_core.errors import ConfigError
from slomo_core.interp.base import FrameInterpolator
from slomo_core.interp.network import InferenceSettings, SuperSloMoInterpolator
from slomo_core.model.shipped import best_shipped, is_shipped, resolve_shipped

MODELS = ("dis", "superslomo")
# The weight-free interpolator stays the default until shipped network weights beat it on bench/quality.py.
DEFAULT_MODEL = "dis"


def model_weights(model: str, weights: str | None) -> str | None:
    """The weights a model runs with: the ones given, or for ``superslomo`` without any, the best shipped."""
    if model == "superslomo" and weights is None:
        return best_shipped()
    return weights


def validate_model_choice(model: str, weights: str | None) -> None:
    """Model/weights mistakes caught before any work starts (or any worker loads anything)."""
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
    if model == "dis" and weights is not None:
        raise ConfigError("--weights applies to --model superslomo only")
    weights = model_weights(model, weights)
    if model == "superslomo" and is_shipped(weights):
        resolve_shipped(weights)  # an unknown name fails here, before any work


def build_interpolator(
    model: str = DEFAULT_MODEL,
    weights: str | None = None,
    inference: InferenceSettings = InferenceSettings(),
) -> FrameInterpolator:
    validate_model_choice(model, weights)
    if model == "dis":
        from slomo_core.interp.dis import DISInterpolator

        return DISInterpolator()
    if model == "superslomo":
        from slomo_core.model.checkpoint import load_superslomo

        network, info = load_superslomo(resolve_shipped(model_weights(model, weights)))
        return SuperSloMoInterpolator(network, inference, weights_sha256=info.weights_sha256)
    raise ConfigError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
