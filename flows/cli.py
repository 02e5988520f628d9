"""The ``slomo`` command line: parsing and printing only; the work lives in slomo_core.

Every user-fixable problem surfaces as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from importlib import resources
from typing import Any, NoReturn

from flows.interrupts import interrupted_line
from slomo_core.dedup import MAX_DROPPED_RUN, MEASURE
from slomo_core.errors import ConfigError, SlomoError
from slomo_core.interp.factory import MODELS
from slomo_core.model.shipped import best_shipped
from slomo_core.settings import CODEC_CHOICES, DTYPE_CHOICES, ConversionSettings
from slomo_core.timestamps import MODES
from slomo_core.video.choices import AUDIO_MODES, SUBTITLE_MODES

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """Usage text for --help only: an option error is one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"slomo: error: {message}\n")


def _setting(group: Any, flag: str, **kwargs: Any) -> None:
    """An option that sets the ConversionSettings field of the same name; its default is the field's."""
    name = flag[2:].replace("-", "_")
    default = ConversionSettings.model_fields[name].default
    if default is not None and not isinstance(default, bool):
        kwargs["help"] += f" (default {default})"
    group.add_argument(flag, dest=name, default=argparse.SUPPRESS, **kwargs)


def _add_convert_options(parser: argparse.ArgumentParser) -> None:
    rate = parser.add_argument_group("rate (one of)")
    target = rate.add_mutually_exclusive_group()
    _setting(target, "--factor", type=int, help="integer factor N >= 2: N-1 new frames between every pair")
    _setting(target, "--fps", help="target frame rate, e.g. 60 or 59.94 (implies --mode fps)")
    _setting(parser, "--mode", choices=MODES,
             help="slowmo: same frame rate, N times longer (default with --factor); "
             "fps: same duration, N times the frames (default with --fps)")
    model = parser.add_argument_group("model")
    _setting(model, "--model", choices=MODELS,
             help="dis: weight-free optical-flow interpolator; superslomo: the network; superslomo-dis: DIS flows "
             "refined by the network's second U-Net (networks run the best shipped weights unless --weights says otherwise)")
    _setting(model, "--weights", metavar="PATH",
             help="Super SloMo checkpoint (public state_dictFC/AT layout or slomo's; any fsspec URL), "
             f"or shipped:NAME for weights that ship with slomo (see README); default: {best_shipped()}")
    _setting(model, "--device", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N")
    _setting(model, "--dtype", choices=DTYPE_CHOICES,
             help="network compute dtype; auto = bf16 on GPUs and on CPUs with native bf16, else fp32")
    _setting(model, "--channels-last", action=argparse.BooleanOptionalAction,
             help="channels_last memory format for the network (default on: faster on CPUs and GPUs)")
    _setting(model, "--compile", action="store_true",
             help="torch.compile the network (Inductor): a slower first batch, faster ones after")
    _setting(model, "--batch-pairs", type=int, help="frame pairs interpolated per call")
    _setting(model, "--max-batch-pixels", type=int,
             help="pixel budget per network pass; larger frames are tiled (default: sized from free memory)")
    scene = parser.add_argument_group("scene cuts").add_mutually_exclusive_group()
    _setting(scene, "--scene-threshold", type=float,
             help="cut score in (0, 1] above which a pair is a cut and frame i is repeated")
    scene.add_argument("--no-scene-detect", dest="scene_threshold", action="store_const", const=None,
                       default=argparse.SUPPRESS, help="interpolate across every pair, cuts included")
    dedup = parser.add_argument_group("duplicate frames")
    _setting(dedup, "--dedup", action="store_true",
             help="drop frames that repeat the previous one (anime on twos, telecined or stuttering captures) and "
             f"interpolate over them at their real times; runs of more than {MAX_DROPPED_RUN} repeats are a still "
             "(a frozen screen) and are kept as they are")
    _setting(dedup, "--dedup-threshold", type=float, metavar="LEVELS",
             help=f"with --dedup: a frame repeats the previous one when the {MEASURE} is at most this")
    enc = parser.add_argument_group("encoding")
    _setting(enc, "--codec", choices=CODEC_CHOICES, help="h264, h265, av1 (SVT-AV1) or ffv1 (lossless)")
    _setting(enc, "--crf", type=int, help="quality (lower is better); defaults: h264 18, h265 20, av1 30")
    _setting(enc, "--preset", help="encoder speed preset (x264/x265 names such as medium; SVT-AV1 0-13)")
    _setting(enc, "--pix-fmt", metavar="FORMAT",
             help="output pixel format, e.g. yuv420p to accept 8 bits from a deeper source "
             "(default: the source's own format and bit depth where the codec holds it, else 4:2:0 at that depth)")
    _setting(enc, "--audio", choices=AUDIO_MODES,
             help="fps mode: copy (default) or drop; slowmo mode: drop (default) or stretch (pitch kept)")
    _setting(enc, "--subtitles", choices=SUBTITLE_MODES,
             help="subtitle streams and chapters; fps mode: copy (default, unchanged) or drop; slowmo mode: "
             "stretch (default, every time x N) or drop (the summary says so). Tags are always kept")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_run_options(parser)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("distributed run (Prefect flow + Ray actors)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true",
                       help="run in this process without Prefect or Ray, keeping no job state (local files only; same chunks)")
    where.add_argument("--flow", action="store_true",
                       help="run the Prefect flow on Ray actors even when no cluster feature is asked for "
                       "(by default a one-worker job on local files runs in this process, with the same job state)")
    _setting(run, "--workers", type=int, help="Ray actors, each loading the model once (more than 1 runs the flow)")
    _setting(run, "--gpus-per-worker", type=float,
             help="GPUs each actor reserves (default: 1 if the cluster shows GPUs at start, else 0; "
             "set 1 on autoscaling clusters whose GPU nodes start from zero)")
    _setting(run, "--ray-address", help="Ray cluster to use, e.g. auto or ray://head:10001 (default: local Ray)")
    _setting(run, "--chunk-seconds", type=float, help="chunk length in seconds of input")
    _setting(run, "--chunk-frames", type=int, help="chunk length in input frames (instead of seconds)")
    _setting(run, "--work-dir", help="where job state (manifest, segments, markers) lives; "
             "default: .slomo-work beside the output")
    _setting(run, "--lease-seconds", type=float,
             help="time to live of a job's lease, renewed while the run lives; a run killed without releasing "
             "it blocks its job this long")
    run.add_argument("--s3-endpoint", help="S3-compatible endpoint URL for s3:// paths (MinIO, moto, ...)")
    run.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                     help="fsspec storage option (repeatable; VALUE parsed as JSON when it can be)")


def settings_from_args(args: argparse.Namespace) -> ConversionSettings:
    """The one mapping from options to settings: every option given, by its field name."""
    given = {name: getattr(args, name) for name in ConversionSettings.model_fields if hasattr(args, name)}
    return ConversionSettings.from_values(**given)


def storage_options(args: argparse.Namespace) -> dict | None:
    """fsspec options from --s3-endpoint and --storage-option KEY=VALUE."""
    options: dict = {}
    for item in args.storage_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--storage-option needs KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if args.s3_endpoint:
        options.setdefault("client_kwargs", {})["endpoint_url"] = args.s3_endpoint
    return options or None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="slomo",
        description="Slow motion and frame-rate conversion with Super SloMo frame interpolation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert = sub.add_parser("convert", help="convert one video", description=(
        "Interpolate new frames between every pair of input frames. Examples: "
        "`slomo convert in.mp4 out.mp4 --factor 4` (4x slow motion); "
        "`slomo convert in.mp4 out.mp4 --fps 60` (same duration at 60 fps)."))
    convert.add_argument("input", help="input video file")
    convert.add_argument("output", help="output video file (.mp4, .mov or .mkv); written only when complete")
    _add_convert_options(convert)
    archive = sub.add_parser("archive", help="convert every video under a prefix that has no finished output", description=(
        "Idempotent batch conversion: re-running converts only videos without a finished output for these settings. "
        "Example: `slomo archive s3://cams/raw s3://cams/slow --factor 4 --workers 4 --ray-address auto`."))
    archive.add_argument("input_prefix", help="folder or s3:// prefix with the source videos")
    archive.add_argument("output_prefix", help="folder or s3:// prefix for the outputs (same relative paths)")
    archive.add_argument("--pattern", default="**/*.mp4", help="glob under the prefix (default **/*.mp4)")
    archive.add_argument("--suffix", default="", help="added to each output name before the extension")
    archive.add_argument("--videos-per-pool", type=int, default=16,
                         help="videos whose chunks share one pool of --workers actors (default 16)")
    _add_convert_options(archive)
    probe = sub.add_parser("probe", help="print stream facts of a video")
    probe.add_argument("input", help="video file")
    probe.add_argument("--json", action="store_true", help="machine-readable output")
    demo = sub.add_parser("demo", help="4x slow motion of the embedded sample clip, through the flow and Ray actors")
    demo.add_argument("output", nargs="?", default="slomo-demo.mp4", help="where to write it (default slomo-demo.mp4)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    demo.add_argument("--local", action="store_true", help="in this process, without Prefect and Ray")
    return parser


def _timestamps_note(timestamps: str | None) -> str:
    """The summary's mention of repaired or sparse input timestamps (nothing when they were fine)."""
    from slomo_core.plan import TIMESTAMPS_AS_IN_FILE

    return f", timestamps {timestamps}" if timestamps and timestamps != TIMESTAMPS_AS_IN_FILE else ""


def _repeats_note(frames: int, dropped: int | None, held: int | None) -> str:
    """The summary's --dedup counts (nothing when dedup was off)."""
    if dropped is None:
        return ""
    return f", dedup: {frames} frames seen, {dropped} repeat(s) dropped, {held} kept (stills)"


def _run_convert(source: str, output: str, options, interpolator, quiet: bool, storage: dict | None) -> int:
    from tqdm import tqdm

    from slomo_core.convert import convert_locally

    bar: tqdm | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:  # created on the first frame, so failed checks print nothing but their error
            bar = tqdm(total=total, unit="frame", desc="interpolating", disable=quiet, dynamic_ncols=True)
        bar.update(done - bar.n)

    try:
        report = convert_locally(source, output, interpolator, options, progress=progress, storage=storage)
    finally:
        if bar is not None:
            bar.close()
    cuts = f", {len(report.scene_cuts)} scene cut(s) kept sharp" if report.scene_cuts else ""
    print(
        f"{report.output}: {report.input_frames} -> {report.output_frames} frames with {report.interpolator}"
        f" in {report.chunks} chunk(s), {report.seconds:.1f} s ({report.frames_per_second:.1f} frames/s){cuts}, audio {report.audio_mode}"
        f"{_timestamps_note(report.timestamps)}{_repeats_note(report.input_frames, report.repeats_dropped, report.repeats_held)}"
        f"{_side_streams(report.subtitles)}{_rounded(report.output_timestamps)}"
    )
    return EXIT_OK


def _rounded(timestamps: str) -> str:
    """Said only when the container rounded the timestamps (.mkv's 1 ms clock)."""
    return "" if timestamps == "exact" else f"; timestamps {timestamps}"


def _side_streams(subtitles: str | None) -> str:
    """Said only when the source has subtitles or chapters (and always when they are dropped)."""
    return "" if subtitles in (None, "none in the source") else f", {subtitles}"


def _cmd_convert(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.local:
        from slomo_core.interp.factory import build_interpolator

        storage = storage_options(args)  # stays in this process: no flow parameters to keep secrets out of
        interpolator = build_interpolator(settings.model, settings.weights, settings.inference)
        return _run_convert(args.input, args.output, settings.convert_options(args.overwrite), interpolator, args.quiet,
                            storage)
    from flows.runner import run_convert

    summary = run_convert(args, settings, storage_options(args))
    where = "in this process" if summary.get("in_process") else f"on {len(summary['workers']) or 'no'} worker(s)"
    print(
        f"{summary['output_uri']}: {summary['input_frames']} -> {summary['output_frames']} frames in "
        f"{summary['chunks']} chunk(s) {where} in {summary['seconds']:.1f} s"
        f"{' (resumed ' + str(summary['chunks_resumed']) + ')' if summary['chunks_resumed'] else ''}, "
        f"audio {summary['audio_mode']}{_timestamps_note(summary.get('timestamps'))}"
        f"{_repeats_note(summary['input_frames'], summary.get('repeats_dropped'), summary.get('repeats_held'))}"
        f"{_side_streams(summary.get('subtitles'))}{_rounded(summary.get('output_timestamps', 'exact'))}"
    )
    return EXIT_OK


def _cmd_archive(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    from flows.archive import BEING_CONVERTED
    from flows.runner import run_archive_flow

    rows = run_archive_flow(args, settings, storage_options(args))
    converted = sum(r["status"] == "converted" for r in rows)
    busy = [r for r in rows if r["status"].startswith(BEING_CONVERTED)]
    print(f"{args.output_prefix}: {converted} converted, {len(rows) - converted - len(busy)} already done"
          + (f", {len(busy)} being converted by another run" if busy else ""))
    for row in busy:
        print(f"  {row['source']}: {row['status']}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded sample: the Prefect flow, two local Ray actors, chunks, stitching."""
    sample = resources.files("slomo_core") / "assets" / "sample.mp4"
    with resources.as_file(sample) as path:
        argv = ["convert", str(path), args.output, "--factor", "4", "--audio", "stretch", "--overwrite",
                "--chunk-seconds", "2", "--workers", "2"] + (["--quiet"] if args.quiet else [])
        if args.local:
            argv.append("--local")
        return _COMMANDS["convert"](build_parser().parse_args(argv))


def _cmd_probe(args: argparse.Namespace) -> int:
    from slomo_core.errors import InputError
    from slomo_core.plan import TIMESTAMPS_AS_IN_FILE
    from slomo_core.video.probe import check_convertible, probe, read_frame_index

    try:
        info, index = check_convertible(args.input)  # the decision `slomo convert` makes
        convertible = "yes"
    except InputError as exc:
        info, index = probe(args.input), read_frame_index(args.input)  # raises when not even a video
        convertible = f"no: {exc}"
    pts = index.pts
    facts = asdict(info)
    facts["colour"] = info.colour.describe() if info.colour else None  # names, the guess said as such
    facts["frames"] = len(pts)
    if len(pts) >= 2:
        steps = {b - a for a, b in zip(pts, pts[1:])}
        facts["constant_frame_rate"] = len(steps) == 1
        facts["first_pts"], facts["last_pts"] = pts[0], pts[-1]
    facts["timestamps"] = "; ".join(index.notes) or TIMESTAMPS_AS_IN_FILE
    facts["convertible"] = convertible
    if args.json:
        print(json.dumps(facts, default=str, indent=2))
        return EXIT_OK
    for key, value in facts.items():
        if key in ("audio", "metadata") and value:
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif key == "subtitles":
            value = ", ".join(f"{s['codec']} ({s['language'] or 'no language'})" for s in value) or "none"
        elif key == "colour" and value:
            for name, fact in value.items():
                if name != "pix_fmt":  # printed above
                    print(f"{name:20s} {fact}")
            continue
        print(f"{key:20s} {value}")
    return EXIT_OK


_COMMANDS = {"convert": _cmd_convert, "archive": _cmd_archive, "probe": _cmd_probe, "demo": _cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Prefect logs failed tasks with tracebacks; the CLI reports the error itself in one line.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if args.verbose else "CRITICAL")
    # The ephemeral API and the local Ray that slomo starts send nothing home (set before either is imported).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not args.verbose:  # notices the user cannot act on (Ray's token-auth and start-up lines, actors' logs)
        os.environ.setdefault("RAY_LOGGER_LEVEL", "error")
        os.environ.setdefault("RAY_LOG_TO_DRIVER", "0")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except SlomoError as exc:
        print(f"slomo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_ERROR
    except KeyboardInterrupt as exc:  # the flow path says what it kept (flows/interrupts.py)
        print(interrupted_line(str(exc) or "no output written"), file=sys.stderr)
        gc.freeze()  # the process ends now: skip the full collection at exit, seconds of an interrupt's deadline
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
