"""Training speed: samples/s for data alone, the optimizer step alone, and both as the training loop runs them.

Each row is one device and one renderer of synthetic frames: ``opencv`` (one sample at a time on one host
thread, the way every run trained before) and ``device`` (scenes drawn on the host, pixels rendered in one
``grid_sample`` batch on the training device). "both" is ``Trainer.step(Trainer.next_batch())``, exactly the
loop of ``Trainer.run``; when it is close to "step", data is not the bottleneck. Windows of ``--steps``
iterations alternate between renderers and modes; the table gives medians over ``--repeats`` windows.

    python -m bench.train_speed                                    # CPU, and CUDA when torch sees one
    python -m bench.train_speed --devices cuda --crop 256 --batch-size 32 --dtype bf16 --out table.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from training.config import PRESETS, TrainConfig
from training.loop import Trainer

MODES = ("data", "step", "both")
RENDERERS = ("opencv", "device")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _gpu_busy(device: torch.device) -> str:
    """NVML's busy percentage over its last sample period (needs pynvml; '-' where unavailable)."""
    if device.type != "cuda":
        return "-"
    try:
        return f"{torch.cuda.utilization(device)}%"
    except Exception:  # noqa: BLE001 -- pynvml missing or NVML unreadable: the column is optional
        return "-"


def _window(trainer: Trainer, mode: str, steps: int) -> tuple[float, str]:
    """Samples/s over ``steps`` iterations of ``mode``, and the GPU's busy share at the end of it."""
    fixed = trainer.next_batch() if mode == "step" else None
    work: Callable[[], object] = {
        "data": trainer.next_batch,
        "step": lambda: trainer.step(fixed),
        "both": lambda: trainer.step(trainer.next_batch()),
    }[mode]
    _synchronize(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        work()
    busy = _gpu_busy(trainer.device)
    _synchronize(trainer.device)
    return steps * trainer.config.batch_size / (time.perf_counter() - start), busy


def _trainer(args: argparse.Namespace, device: str, renderer: str, folder: str) -> Trainer:
    config = TrainConfig(preset=args.preset, crop=args.crop, batch_size=args.batch_size, device=device,
                         dtype=args.dtype, channels_last=args.channels_last, threads=args.threads,
                         max_shift=args.max_shift, renderer=renderer, eval_samples=1, seed=0)
    return Trainer(config, folder)


def measure(args: argparse.Namespace, device: str) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="slomo-train-speed-") as folder:
        trainers = {r: _trainer(args, device, r, f"{folder}/{r}") for r in RENDERERS}
        for trainer in trainers.values():  # warm-up: allocator, cuDNN's algorithm search, first renders
            for mode in MODES:
                _window(trainer, mode, 2)
        rates: dict[tuple[str, str], list[float]] = {(r, m): [] for r in RENDERERS for m in MODES}
        busy: dict[str, str] = {}
        for _ in range(args.repeats):
            for renderer, trainer in trainers.items():
                for mode in MODES:
                    rate, gpu = _window(trainer, mode, args.steps)
                    rates[renderer, mode].append(rate)
                    if mode == "both":
                        busy[renderer] = gpu
        for renderer, trainer in trainers.items():
            median = {m: statistics.median(rates[renderer, m]) for m in MODES}
            rows.append({"device": str(trainer.device), "dtype": str(trainer.amp_dtype).removeprefix("torch."),
                         "renderer": renderer, **median, "ratio": median["both"] / median["step"],
                         "busy": busy[renderer]})
    return rows


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        (f"Training speed, {args.preset} preset, crop {args.crop}, batch {args.batch_size}, "
         f"medians of {args.repeats} windows of {args.steps} iterations (samples/s)"),
        "",
        ("| device | autocast | renderer | data alone | step alone | both (training loop) | both / step "
         "| GPU busy (end of both) |"),
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['device']} | {r['dtype']} | {r['renderer']} | {r['data']:.1f} | {r['step']:.1f} "
                     f"| {r['both']:.1f} | {r['ratio']:.2f} | {r['busy']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", nargs="+", help="default: cpu, and cuda when available")
    parser.add_argument("--preset", choices=list(PRESETS), default="light")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--max-shift", type=float, default=24.0)
    parser.add_argument("--steps", type=int, default=5, help="iterations per timed window")
    parser.add_argument("--repeats", type=int, default=3, help="windows per row; the table shows medians")
    parser.add_argument("--out", help="also append the table to this file (written after each device)")
    args = parser.parse_args(argv)
    devices = args.devices or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    rows: list[dict] = []
    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"train_speed: {device} skipped: torch sees no CUDA device", file=sys.stderr)
            continue
        rows.extend(measure(args, device))
        if args.out:  # after each device, so a run cut short still leaves what it measured
            Path(args.out).write_text(table(rows, args) + "\n")
    print(table(rows, args), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
