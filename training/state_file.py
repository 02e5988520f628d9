"""The run's ``state.pt``: written atomically, read back with ``weights_only=True`` so no pickled code runs.

Everything in it is a tensor or plain data: model and optimizer state dicts (tensors, numbers, lists),
and one JSON text holding the config, the step counters, the history and the RNG states. A file that
holds any other object (a ``__reduce__`` payload, a numpy array, a class instance) is refused with one
line before anything in it is built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from slomo_core.errors import ConfigError

STATE_FORMAT = "slomo.train-state"
# Version 2 keeps config, counters and RNG states in one JSON text; version 1 (no "version" key) stored
# them as nested dicts, which weights_only also reads, so older runs still resume.
STATE_VERSION = 2


def write_state(path: Path, model: dict, optimizer: dict, meta: dict[str, Any],
                tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Write atomically: a crash mid-write leaves the previous state in place."""
    payload = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "meta": json.dumps(meta),
        "model": model,
        "optimizer": optimizer,
        "tensors": tensors or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_state(path: Path) -> dict[str, Any]:
    """``{"meta": dict, "model": ..., "optimizer": ..., "tensors": dict}``; one-line ConfigError otherwise."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 -- UnpicklingError for disallowed globals, EOFError etc. for damaged bytes
        raise ConfigError(
            f"{path}: not a slomo training state that loads as plain tensors and data (refused unread: it may "
            "hold code, be damaged, or come from another program); move it away or train into another --out"
        ) from None
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise ConfigError(f"{path}: not a slomo training state (train into another --out)")
    try:
        if data.get("version") == STATE_VERSION:
            meta = json.loads(data["meta"])
        else:  # version 1: the same fields as nested plain dicts
            meta = {"config": data["config"], "state": data["state"], "rng": data.get("rng", {})}
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
            raise TypeError("config")
        return {"meta": meta, "model": data["model"], "optimizer": data["optimizer"],
                "tensors": data.get("tensors") or {}}
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: slomo training state with a missing or malformed {exc} entry "
                          "(train into another --out)") from None
