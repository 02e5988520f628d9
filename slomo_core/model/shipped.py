"""Weights that ship inside the package, named ``shipped:NAME`` wherever a weights path is accepted.

The name resolves on whichever machine loads it (each Ray worker has the package installed), so a job
planned on a laptop runs on a cluster without copying files; the manifest still records the sha256.
Each file has a card (``NAME.md``) beside it: data, steps, benchmark figures.
"""

from __future__ import annotations

from pathlib import Path

from slomo_core.errors import CheckpointError

PREFIX = "shipped:"
# What ``--model ARCH`` runs without ``--weights``: per architecture, the shipped weights that score best on
# bench/quality.py (mean of the real clips at 2x and 8x; figures on each card), None while none ship.
# The one place that choice is made.
BEST: dict[str, str | None] = {"superslomo": "superslomo-light", "superslomo-dis": None}


def weights_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "weights"


def shipped_names() -> list[str]:
    folder = weights_dir()
    return sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []


def best_shipped(arch: str = "superslomo") -> str:
    """``shipped:NAME`` of the best shipped weights of an architecture; one line saying to pass --weights
    where none ship."""
    name = BEST.get(arch)
    if name is None:
        raise CheckpointError(f"no {arch} weights ship with slomo yet: pass --weights FILE (a checkpoint of "
                              f"slomo-train train --arch {arch})")
    return PREFIX + name


def is_shipped(weights: str | None) -> bool:
    return weights is not None and weights.startswith(PREFIX)


def resolve_shipped(weights: str) -> str:
    """The local path of ``shipped:NAME``; any other string is returned unchanged."""
    if not is_shipped(weights):
        return weights
    name = weights[len(PREFIX):]
    path = weights_dir() / f"{name}.pt"
    if not path.is_file():
        names = ", ".join(PREFIX + n for n in shipped_names()) or "none"
        raise CheckpointError(f"{weights}: no such shipped weights (shipped: {names})")
    return str(path)
