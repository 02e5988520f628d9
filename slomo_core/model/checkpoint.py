"""Loading and saving Super SloMo weights.

Two layouts load unchanged:
- the widely used public PyTorch re-implementation: a dict with ``state_dictFC`` (flow net) and
  ``state_dictAT`` (interpolation net), full widths, reference normalisation;
- slomo's own: the same two keys (so the public code can read full-width files too) plus metadata
  (architecture widths, normalisation, training notes) and a sha256 of the weights that is checked on load.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from slomo_core.errors import CheckpointError
from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig
from slomo_core.storage import file_sha256

FORMAT_NAME = "slomo.superslomo"
FORMAT_VERSION = 1
_FLOW_KEY = "state_dictFC"
_INTERP_KEY = "state_dictAT"
# Output channels of conv1 and down1..down5 give the six widths of a U-Net.
_WIDTH_LAYERS = ("conv1", "down1.conv1", "down2.conv1", "down3.conv1", "down4.conv1", "down5.conv1")


@dataclass(frozen=True)
class CheckpointInfo:
    """Where weights came from; the manifest records ``weights_sha256`` so a run is reproducible."""

    path: str
    layout: str  # "public" or "slomo"
    config: SuperSloMoConfig
    file_sha256: str
    weights_sha256: str
    training: Mapping[str, Any] = field(default_factory=dict)


def weights_sha256(flow_state: Mapping[str, torch.Tensor], interp_state: Mapping[str, torch.Tensor]) -> str:
    """A hash of names, dtypes, shapes and bytes: independent of pickling details."""
    digest = hashlib.sha256()
    for prefix, state in (("flow", flow_state), ("interp", interp_state)):
        for name in sorted(state):
            tensor = state[name].detach().cpu().contiguous()
            digest.update(f"{prefix}.{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Files saved from nn.DataParallel prefix every name with "module.".
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def _read(path: str) -> dict:
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: weights file not found")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not a weights file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # arbitrary bytes raise UnpicklingError, KeyError, EOFError, RuntimeError...
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None
    if not isinstance(data, dict) or _FLOW_KEY not in data or _INTERP_KEY not in data:
        found = sorted(map(str, data))[:6] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path}: not a Super SloMo checkpoint (expected keys {_FLOW_KEY!r} and {_INTERP_KEY!r}, found {found})"
        )
    return data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    detail = text[0][:160] if text else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _infer_widths(path: str, state: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    try:
        return tuple(int(state[f"{layer}.weight"].shape[0]) for layer in _WIDTH_LAYERS)
    except KeyError as exc:
        raise CheckpointError(f"{path}: flow net is missing {exc.args[0]!r}") from None


def _load_into(path: str, net: torch.nn.Module, state: Mapping[str, torch.Tensor], which: str) -> None:
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[0]})")
        raise CheckpointError(f"{path}: {which} does not match Super SloMo: {', '.join(parts)}")
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: {which} entry {name} is not a tensor")
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{path}: {which} shape mismatch for {name}: file {tuple(tensor.shape)}, "
                f"model {tuple(expected[name].shape)}"
            )
        if not torch.isfinite(tensor.float()).all():
            raise CheckpointError(f"{path}: {which} entry {name} holds NaN or infinite values")
    net.load_state_dict({k: v.float() for k, v in state.items()})


def load_superslomo(path: str) -> tuple[SuperSloMo, CheckpointInfo]:
    """Build a float32 CPU model from either layout; every failure is a one-line CheckpointError."""
    path = os.fspath(path)
    data = _read(path)
    flow_state = _strip_prefix(data[_FLOW_KEY])
    interp_state = _strip_prefix(data[_INTERP_KEY])
    digest = weights_sha256(flow_state, interp_state)
    if data.get("format") == FORMAT_NAME:
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise CheckpointError(f"{path}: written by a newer slomo (format version {data['format_version']})")
        layout = "slomo"
        config = SuperSloMoConfig.from_dict({**data.get("architecture", {}), **data.get("normalization", {})})
        stored = data.get("weights_sha256")
        if stored and stored != digest:
            raise CheckpointError(f"{path}: weights do not match their recorded sha256 (file corrupted?)")
        training = dict(data.get("training", {}))
    else:
        layout = "public"
        config = SuperSloMoConfig(widths=_infer_widths(path, flow_state))
        training = {k: v for k, v in data.items() if k not in (_FLOW_KEY, _INTERP_KEY) and _is_plain(v)}
    model = SuperSloMo(config)
    _load_into(path, model.flow_net, flow_state, "flow net (state_dictFC)")
    _load_into(path, model.interp_net, interp_state, "interpolation net (state_dictAT)")
    model.eval()
    return model, CheckpointInfo(path, layout, config, file_sha256(path), digest, training)


def _is_plain(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def save_superslomo(
    model: SuperSloMo,
    path: str,
    *,
    training: Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> str:
    """Write slomo's own layout (optionally fp16 to keep shipped files small); returns the weights sha256."""
    flow_state = {k: v.detach().to("cpu", dtype) for k, v in model.flow_net.state_dict().items()}
    interp_state = {k: v.detach().to("cpu", dtype) for k, v in model.interp_net.state_dict().items()}
    digest = weights_sha256(flow_state, interp_state)
    config = model.config.to_dict()
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": {"name": "SuperSloMo", "widths": config["widths"]},
        "normalization": {"mean": config["mean"], "std": config["std"]},
        "training": dict(training or {}),
        "weights_sha256": digest,
        _FLOW_KEY: flow_state,
        _INTERP_KEY: interp_state,
    }
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return digest
