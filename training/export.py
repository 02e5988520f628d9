"""Ship a run's weights: fp16 in slomo's checkpoint format, with a sha256 and a card beside them.

The card is the user's answer to "where do these weights come from and how good are they": data, steps,
training time, losses, validation PSNR, and the quality benchmark's table when given.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from slomo_core.model.checkpoint import load_superslomo, save_superslomo
from slomo_core.model.warp_convention import SLOMO_WARP, WarpConvention
from slomo_core.storage import file_sha256


def curve_table(curve_csv: str, rows: int = 16) -> str:
    """Validation rows of a run's curve.csv, thinned evenly to at most ``rows`` (the last one kept)."""
    with open(curve_csv, newline="") as handle:
        evaluated = [r for r in csv.DictReader(handle) if r.get("val_psnr")]
    if len(evaluated) > rows:
        stride = len(evaluated) / (rows - 1)
        evaluated = [evaluated[int(i * stride)] for i in range(rows - 1)] + [evaluated[-1]]
    lines = ["| step | samples | train loss | validation PSNR dB | 50/50 blend dB |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['step']} | {r['samples']} | {float(r['loss']):.2f} | {float(r['val_psnr']):.2f} | "
              f"{float(r['val_blend_psnr']):.2f} |" for r in evaluated]
    return "\n".join(lines)


def card_text(name: str, weights_digest: str, file_digest: str, training: dict, benchmark: str | None,
              curve: str | None = None, warp: WarpConvention = SLOMO_WARP) -> str:
    lines = [
        f"# {name}",
        "",
        "Super SloMo (Jiang et al., CVPR 2018) weights trained by slomo's `training/` package."
        if training.get("arch", "superslomo") == "superslomo" else
        "superslomo-dis weights trained by slomo's `training/` package: OpenCV DIS optical flow both ways (the `dis` "
        "interpolator's), refined by Super SloMo's arbitrary-time interpolation U-Net (Jiang et al., CVPR 2018), "
        "which predicts flow residuals and visibility; the paper's fusion.",
        "",
        "| | |",
        "|---|---|",
        f"| file sha256 | `{file_digest}` |",
        f"| weights sha256 (checked on load) | `{weights_digest}` |",
        f"| warp convention (recorded in the file) | {warp.describe()} |",
    ]
    keys = ("arch", "preset", "init", "steps", "samples", "train_seconds", "batch_size", "crop", "lr", "lr_milestones", "data",
            "losses", "teacher", "distill_weight", "val_psnr")
    for key in keys:
        if key in training:
            lines.append(f"| {key.replace('_', ' ')} | {training[key]} |")
    lines += ["", ("Validation PSNR is on held-out synthetic triplets (a seed training never draws), not on the "
                   "benchmark clips.")]
    if curve:
        lines += ["", "## Learning curve", "", curve]
    if benchmark:
        lines += ["", "## Quality benchmark (bench/quality.py)", "", benchmark.strip()]
    return "\n".join(lines) + "\n"


def export_weights(checkpoint: str, output: str, benchmark_markdown: str | None = None,
                   curve_csv: str | None = None) -> tuple[str, str]:
    """Write fp16 weights and ``<output>.md``; returns (weights sha256, card path)."""
    model, info = load_superslomo(checkpoint)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    training = dict(info.training)
    training["exported_from"] = info.weights_sha256
    digest = save_superslomo(model, output, training=training, dtype=torch.float16)
    benchmark = Path(benchmark_markdown).read_text() if benchmark_markdown else None
    card = os.path.splitext(output)[0] + ".md"
    name = Path(output).name
    curve = curve_table(curve_csv) if curve_csv else None
    Path(card).write_text(card_text(name, digest, file_sha256(output), training, benchmark, curve, model.config.warp))
    return digest, card
