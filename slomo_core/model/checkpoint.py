"""Loading and saving Super SloMo weights.

Two layouts load unchanged:
- the widely used public PyTorch re-implementation: a dict with ``state_dictFC`` (flow net) and
  ``state_dictAT`` (interpolation net), full widths, reference normalisation;
- slomo's own: the same two keys (so the public code can read full-width files too) plus metadata
  (architecture name and widths, normalisation, warp convention, training notes) and a sha256 of the weights
  that is checked on load. A ``superslomo-dis`` file (DIS flows + the interpolation U-Net) holds an empty
  ``state_dictFC``; its architecture name says so, and callers that expect the other one refuse it.

Every loaded model carries the warp convention its weights were trained under: public files always run the
public re-implementation's (``PUBLIC_WARP``), slomo files the one they record (files from before conventions
were recorded, format version 1, were all trained with ``SLOMO_WARP``).

Files are read with ``weights_only=True``: tensors and plain containers, plus ``datetime.datetime`` (the
public ``train.py`` stores ``datetime.now()``), allowed for that one load only. A file that carries anything
else, code included, is refused before any of it runs.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from slomo_core.errors import CheckpointError
from slomo_core.model.superslomo import ARCH_SUPERSLOMO, ARCHITECTURES, SuperSloMo, SuperSloMoConfig
from slomo_core.model.warp_convention import PUBLIC_WARP, SLOMO_WARP, WarpConvention
from slomo_core.storage import file_sha256

FORMAT_NAME = "slomo.superslomo"
FORMAT_VERSION = 2  # 2: records the warp convention
# The only non-container types real checkpoints hold: the public train.py's 'timestamp'.
_SAFE_TYPES = (datetime.datetime,)
_FLOW_KEY = "state_dictFC"
_INTERP_KEY = "state_dictAT"
# ``architecture.name`` in slomo files: files from before the hybrid existed all say "SuperSloMo".
_ARCH_NAMES = {"SuperSloMo": ARCH_SUPERSLOMO, **{a: a for a in ARCHITECTURES}}
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
    return {k.removeprefix("module."): v for k, v in state.items()}


def _read(path: str) -> dict:
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: weights file not found")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not a weights file")
    try:
        with torch.serialization.safe_globals(list(_SAFE_TYPES)):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (arbitrary bytes raise UnpicklingError, KeyError, EOFError...)
        refused = _refused_global(exc)
        if refused:
            raise CheckpointError(
                f"{path}: refused: loading it would call {refused}, which is neither weights nor plain data "
                "(the file may carry code; none of it was run)"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None
    if not isinstance(data, dict) or _FLOW_KEY not in data or _INTERP_KEY not in data:
        found = sorted(map(str, data))[:6] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path}: not a Super SloMo checkpoint (expected keys {_FLOW_KEY!r} and {_INTERP_KEY!r}, found {found})"
        )
    return data


def _refused_global(exc: BaseException) -> str | None:
    """The name torch's weights-only unpickler refused (a function or class the file would call), if any."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    return found.group(1) if found else None


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
        try:
            warp = WarpConvention.from_dict(data["warp"]) if "warp" in data else SLOMO_WARP
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        architecture = dict(data.get("architecture", {}))
        arch_name = str(architecture.pop("name", "SuperSloMo"))
        if arch_name not in _ARCH_NAMES:
            raise CheckpointError(f"{path}: unknown architecture {arch_name!r} (this slomo knows {', '.join(ARCHITECTURES)})")
        stored_config = SuperSloMoConfig.from_dict({**architecture, **data.get("normalization", {})})
        config = replace(stored_config, warp=warp, arch=_ARCH_NAMES[arch_name])
        stored = data.get("weights_sha256")
        if stored and stored != digest:
            raise CheckpointError(f"{path}: weights do not match their recorded sha256 (file corrupted?)")
        training = dict(data.get("training", {}))
    else:
        layout = "public"
        config = SuperSloMoConfig(widths=_infer_widths(path, flow_state), warp=PUBLIC_WARP)
        notes = {k: _plain(v) for k, v in data.items() if k not in (_FLOW_KEY, _INTERP_KEY)}
        training = {k: v for k, v in notes.items() if v is not None}
    model = SuperSloMo(config)
    if model.flow_net is not None:
        _load_into(path, model.flow_net, flow_state, "flow net (state_dictFC)")
    elif flow_state:
        raise CheckpointError(f"{path}: a {config.arch} file must hold no flow net, but state_dictFC has {len(flow_state)} entries")
    _load_into(path, model.interp_net, interp_state, "interpolation net (state_dictAT)")
    model.eval()
    return model, CheckpointInfo(path, layout, config, file_sha256(path), digest, training)


def _plain(value: Any) -> int | float | str | bool | None:
    """Scalar bookkeeping kept as training notes (a datetime as ISO text); lists of losses are left out."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value if isinstance(value, (int, float, str, bool)) else None


def save_superslomo(
    model: SuperSloMo,
    path: str,
    *,
    training: Mapping[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> str:
    """Write slomo's own layout (optionally fp16 to keep shipped files small); returns the weights sha256."""
    flow_net = model.flow_net
    flow_state = {k: v.detach().to("cpu", dtype) for k, v in flow_net.state_dict().items()} if flow_net else {}
    interp_state = {k: v.detach().to("cpu", dtype) for k, v in model.interp_net.state_dict().items()}
    digest = weights_sha256(flow_state, interp_state)
    config = model.config.to_dict()
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": {"name": "SuperSloMo" if model.config.learns_flow else model.config.arch,
                         "widths": config["widths"]},
        "normalization": {"mean": config["mean"], "std": config["std"]},
        "warp": config["warp"],
        "training": dict(training or {}),
        "weights_sha256": digest,
        _FLOW_KEY: flow_state,
        _INTERP_KEY: interp_state,
    }
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return digest
