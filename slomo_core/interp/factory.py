"""Builds the interpolator a user names; the one place that knows every model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from slomo_core.errors import CheckpointError, ConfigError
from slomo_core.interp.base import FrameInterpolator
from slomo_core.interp.inference import InferenceSettings
from slomo_core.model.shipped import best_shipped, is_shipped, resolve_shipped
from slomo_core.scratch import scratch_dir
from slomo_core.storage import StorageOptions, file_sha256, localize

if TYPE_CHECKING:
    from slomo_core.model.superslomo import SuperSloMo

MODELS = ("dis", "superslomo", "superslomo-dis")
# The models that run learned weights (each one architecture of model.superslomo, recorded in its checkpoints).
NETWORK_MODELS = ("superslomo", "superslomo-dis")
# The weight-free interpolator stays the default until shipped network weights beat it on bench/quality.py.
DEFAULT_MODEL = "dis"


def model_weights(model: str, weights: str | None) -> str | None:
    """The weights a model runs with: the ones given, or for a network without any, its best shipped (a
    one-line error where none ship)."""
    if model in NETWORK_MODELS and weights is None:
        return best_shipped(model)
    return weights


def validate_model_choice(model: str, weights: str | None) -> None:
    """Model/weights mistakes caught before any work starts (or any worker loads anything)."""
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
    if model == "dis" and weights is not None:
        raise ConfigError(f"--weights applies to --model {' or '.join(NETWORK_MODELS)} only")
    weights = model_weights(model, weights)
    if model in NETWORK_MODELS and is_shipped(weights):
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
    from slomo_core.model.checkpoint import load_superslomo

    path = resolve_shipped(model_weights(model, weights))
    network, info = load_superslomo(path)
    if info.config.arch != model:
        raise CheckpointError(f"{path}: holds {info.config.arch} weights, not {model} (run it with --model {info.config.arch})")
    return network_interpolator(network, info.weights_sha256, inference)


def network_interpolator(network: SuperSloMo, weights_sha256: str | None = None,
                         inference: InferenceSettings = InferenceSettings()) -> FrameInterpolator:
    """The interpolator that runs a loaded network of either architecture (what its checkpoint records)."""
    if network.config.learns_flow:
        from slomo_core.interp.network import SuperSloMoInterpolator

        return SuperSloMoInterpolator(network, inference, weights_sha256=weights_sha256)
    from slomo_core.interp.hybrid import DISSuperSloMoInterpolator

    return DISSuperSloMoInterpolator(network, inference, weights_sha256=weights_sha256)


@dataclass(frozen=True)
class ModelSpec:
    """Which interpolator every worker builds; weights may be any fsspec URL or ``shipped:NAME``.

    ``weights_sha256`` is the sha256 of the weights file's bytes, taken once when the job is planned;
    a worker that finds other bytes refuses to run, so one job never mixes two models.
    """

    model: str = DEFAULT_MODEL
    weights_uri: str | None = None
    weights_sha256: str | None = None
    inference: InferenceSettings = field(default_factory=InferenceSettings)

    def build(self, cache_dir: str, options: StorageOptions | None) -> FrameInterpolator:
        weights = local_weights(self.weights_uri, cache_dir, options)
        if self.weights_sha256 and weights is not None and file_sha256(weights) != self.weights_sha256:
            raise CheckpointError(f"{self.weights_uri}: weights differ from the ones the job was planned with")
        return build_interpolator(self.model, weights, self.inference)


def local_weights(weights_uri: str | None, cache_dir: str, options: StorageOptions | None) -> str | None:
    """A local file for any fsspec URL, or the packaged file for ``shipped:NAME``."""
    if weights_uri is None:
        return None
    if is_shipped(weights_uri):
        return resolve_shipped(weights_uri)
    return localize(weights_uri, cache_dir, options=options)


def weights_digest(weights_uri: str | None, options: StorageOptions | None = None) -> str | None:
    """The sha256 of the weights file's bytes (what manifests record); no model is loaded to get it."""
    if weights_uri is None:
        return None
    with scratch_dir("slomo-weights-") as cache:
        return file_sha256(local_weights(weights_uri, cache, options))
