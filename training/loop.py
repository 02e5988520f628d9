"""The training loop: resumable from its last checkpoint, stoppable at a wall-clock limit.

A run lives in one folder:
- ``state.pt``: model, optimizer, step, RNG states and history (written atomically; resume reads it);
- ``best.pt``: the weights with the best validation PSNR so far, in slomo's own checkpoint format;
- ``curve.csv``: step, time, mean losses and validation PSNR (against the 50/50 blend's) over the run.

Validation uses a fixed set of synthetic triplets drawn from a seed the training stream never uses.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from slomo_core.errors import ConfigError
from slomo_core.model.checkpoint import load_superslomo, save_superslomo
from slomo_core.model.superslomo import ARCH_SUPERSLOMO, SuperSloMo, SuperSloMoConfig
from slomo_core.runtime import cpu_has_native_bf16, resolve_device, resolve_dtype
from training.config import TrainConfig
from training.data import Batch, TripletSampler, with_dis_flows
from training.distill import build_distiller
from training.losses import DISHybridObjective, SuperSloMoObjective
from training.photos import load_photos, photo_paths
from training.state_file import read_state, write_state
from training.synthetic import MotionRange

if TYPE_CHECKING:
    from slomo_core.interp.dis import DISInterpolator

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
BEST_FILE = "best.pt"
CURVE_FILE = "curve.csv"
CURVE_FIELDS = ("step", "elapsed_s", "samples", "loss", "reconstruction", "warping", "smoothness",
                "val_psnr", "val_blend_psnr", "lr", "distill_flow", "distill_frame")
_VALIDATION_SEED_OFFSET = 1_000_003


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    """bf16 where the hardware runs it natively; emulated bf16 on other CPUs is several times slower."""
    if config.dtype != "auto":
        return resolve_dtype(config.dtype)
    if device.type == "cuda" or cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-image PSNR on 8-bit-quantised frames, as the benchmark measures it."""
    a = (prediction.clamp(0, 1) * 255).round()
    b = (target * 255).round()
    mse = ((a - b) ** 2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return float((10 * torch.log10(255.0**2 / mse)).mean())


def describe_data(config: TrainConfig) -> str:
    """Training data in words for checkpoints and cards (file names only, no local directories)."""
    text = "synthetic sequences from scikit-image photographs"
    for spec in config.videos:
        path, _, region = spec.partition("@")
        text += f" + video triplets from {os.path.basename(path)}"
        if region:
            text += f" (pixels inside x0,y0,x1,y1 = {region} never cropped)"
    return text


def render_device(config: TrainConfig, device: torch.device) -> torch.device | None:
    """Where synthetic frames are rendered: None for OpenCV on the host, else the training device."""
    if config.renderer == "device" or (config.renderer == "auto" and device.type == "cuda"):
        return device
    return None


def build_sampler(config: TrainConfig, device: torch.device | None = None) -> TripletSampler:
    """``device``: render synthetic frames there in batches (see ``render_device``); None: OpenCV."""
    photos = load_photos(photo_paths(config.photo_dirs), min_side=config.crop * 2)
    clips = []
    if config.videos:  # imported only when needed: synthetic-only runs need no PyAV (e.g. on a bare GPU box)
        from training.video_samples import Region, load_clip

        for spec in config.videos:
            path, _, region = spec.partition("@")
            clips.append(load_clip(path, Region.parse(region) if region else None))
    return TripletSampler(photos, clips, config.crop, MotionRange(max_shift=config.max_shift),
                          config.video_fraction, device=device)


def validation_set(config: TrainConfig, sampler: TripletSampler, dis: DISInterpolator | None = None) -> Batch:
    """The same host-rendered set whichever renderer trains, so validation PSNRs stay comparable; with ``dis``
    (``superslomo-dis``), carrying its DIS flows."""
    synthetic_only = TripletSampler(sampler.photos, (), config.crop, sampler.motion, 0.0)
    rng = np.random.default_rng(config.seed + _VALIDATION_SEED_OFFSET)
    batch = synthetic_only.batch(rng, config.eval_samples)
    return with_dis_flows(batch, dis) if dis is not None else batch


def flow_source(config: TrainConfig) -> DISInterpolator | None:
    """The DIS interpolator whose flow function feeds ``superslomo-dis`` (default settings, one solver:
    the same flows inference computes); None for the paper's network, which learns its flows."""
    if config.arch == ARCH_SUPERSLOMO:
        return None
    from slomo_core.interp.dis import DISInterpolator

    return DISInterpolator(flow_threads=1)


@dataclass
class TrainState:
    step: int = 0
    samples: int = 0
    elapsed_s: float = 0.0
    best_val_psnr: float = -math.inf
    history: list[dict] = field(default_factory=list)


class Trainer:
    """One process's training; ``wrap`` turns the objective into e.g. a DDP module (Ray Train)."""

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike, *, rank: int = 0, world_size: int = 1,
                 wrap: Callable[[nn.Module], nn.Module] | None = None, device: torch.device | None = None) -> None:
        self.config = config.validate()
        self.out_dir = Path(out_dir)
        self.rank, self.world_size = rank, world_size
        self.is_chief = rank == 0
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = device or resolve_device(config.device)
        self.amp_dtype = autocast_dtype(config, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels
        torch.manual_seed(config.seed)  # same initial weights on every rank and every fresh run
        # Weights stay fp32 (autocast handles bf16); channels_last is a layout choice only.
        self.model = SuperSloMo(SuperSloMoConfig(widths=config.widths, warp=config.warp_convention, arch=config.arch)
                                ).place(self.device, torch.float32, config.channels_last)
        objective = SuperSloMoObjective if self.model.config.learns_flow else DISHybridObjective
        self.objective = objective(self.model)
        self.dis = flow_source(config)
        self.objective.distill = build_distiller(config.teacher, config.distill_weight, config.warp, self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.state = TrainState()
        self.rng = np.random.default_rng([config.seed, rank])
        self._resume()
        self.wrapped = wrap(self.objective) if wrap else self.objective
        self.sampler = build_sampler(config, render_device(config, self.device))
        self.validation = validation_set(config, self.sampler, self.dis) if self.is_chief else None

    # -- checkpoints -------------------------------------------------------------------------------
    def _initialise(self) -> None:
        """A fresh run starts from ``init_weights`` when given (fine-tuning), else from random weights."""
        if not self.config.init_weights:
            return
        source, info = load_superslomo(self.config.init_weights)
        if info.config.widths != self.config.widths:
            raise ConfigError(f"{self.config.init_weights}: widths {info.config.widths} do not match the "
                              f"{self.config.preset} preset {self.config.widths}")
        if info.config.warp != self.model.config.warp:
            log.warning("%s was trained with the %s warp; this run trains it with %s (--warp %s keeps its own)",
                        self.config.init_weights, info.config.warp.name, self.config.warp, info.config.warp.name)
        if self.model.flow_net is not None:
            if source.flow_net is None:
                raise ConfigError(f"{self.config.init_weights}: a {info.config.arch} file has no flow net to start "
                                  f"a {self.config.arch} run from")
            self.model.flow_net.load_state_dict(source.flow_net.state_dict())
        self.model.interp_net.load_state_dict(source.interp_net.state_dict())  # either arch: the same U-Net
        log.info("initialised from %s (weights sha256 %s)", self.config.init_weights, info.weights_sha256[:12])

    def _resume(self) -> None:
        path = self.out_dir / STATE_FILE
        if not path.exists():
            self._initialise()
            return
        data = read_state(path)
        meta = data["meta"]
        saved = TrainConfig.from_dict(meta["config"])  # runs from before conventions were recorded used slomo's
        if (saved.widths != self.config.widths or saved.crop != self.config.crop or saved.warp != self.config.warp
                or saved.arch != self.config.arch):
            raise ConfigError(f"{path}: run was {saved.arch} {saved.preset} at crop {saved.crop} with the {saved.warp} "
                              f"warp; cannot resume it as {self.config.arch} {self.config.preset} at crop "
                              f"{self.config.crop} with the {self.config.warp} warp (use another --out)")
        try:
            self.model.load_state_dict(data["model"])
            self.optimizer.load_state_dict(data["optimizer"])
            self.state = TrainState(**meta["state"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{path}: training state does not fit this model ({first})") from None
        rng_state = meta.get("rng", {}).get(str(self.rank))
        if rng_state is not None:
            self.rng.bit_generator.state = rng_state
        log.info("resumed %s at step %d (%.0f s trained)", path, self.state.step, self.state.elapsed_s)

    def save(self) -> None:
        if not self.is_chief:
            return
        meta = {"config": self.config.to_dict(), "state": self.state.__dict__,
                "rng": {str(self.rank): self.rng.bit_generator.state}}
        write_state(self.out_dir / STATE_FILE, self.model.state_dict(), self.optimizer.state_dict(), meta)

    def training_metadata(self) -> dict:
        c = self.config
        return {
            "steps": self.state.step, "samples": self.state.samples, "train_seconds": round(self.state.elapsed_s),
            "arch": c.arch, "preset": c.preset, "crop": c.crop, "batch_size": c.batch_size * self.world_size, "lr": c.lr,
            "lr_milestones": list(c.lr_milestones),
            "data": describe_data(c),
            "init": c.init_weights or "random",
            "warp": c.warp,
            "losses": self.objective.description,
            "val_psnr": round(self.state.best_val_psnr, 3),
            **self._teacher_metadata(),
        }

    def _teacher_metadata(self) -> dict:
        distill = self.objective.distill
        if distill is None:
            return {}
        return {"teacher": f"{distill.info.name} ({os.path.basename(distill.info.path)}, sha256 {distill.info.sha256})",
                "distill_weight": distill.weight}

    # -- steps ---------------------------------------------------------------------------------------
    def _lr(self) -> float:
        drops = sum(1 for m in self.config.lr_milestones if self.state.step >= m)
        return self.config.lr * (0.1**drops)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last and x.ndim == 4 else x

    def next_batch(self) -> Batch:
        batch = self.sampler.batch(self.rng, self.config.batch_size)
        return with_dis_flows(batch, self.dis) if self.dis is not None else batch

    def train_step(self, batch: Batch) -> dict[str, float]:
        return {k: float(v) for k, v in self.step(batch).items()}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimizer step; losses stay on the device (reading them would make the host wait for it)."""
        self.objective.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()
        frame0, frame_t, frame1 = (self._prepare(x) for x in (batch.frame0, batch.frame_t, batch.frame1))
        t = batch.t.to(self.device)
        flows = () if self.dis is None else (batch.flow01.to(self.device), batch.flow10.to(self.device))
        with self._autocast():
            losses = self.wrapped(frame0, frame_t, frame1, t, *flows)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.optimizer.step()
        self.state.step += 1
        self.state.samples += batch.t.numel() * self.world_size
        return {k: v.detach() for k, v in losses.items() if k != "prediction"}

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Validation PSNR of the network and of the 50/50 blend on the fixed synthetic set."""
        assert self.validation is not None
        self.objective.eval()
        v = self.validation
        predictions = []
        for start in range(0, v.t.numel(), 16):
            part = slice(start, start + 16)
            frame0, frame1 = self._prepare(v.frame0[part]), self._prepare(v.frame1[part])
            if self.dis is None:
                flow01, flow10 = self.model.compute_flows(frame0, frame1)
            else:
                flow01, flow10 = v.flow01[part].to(self.device), v.flow10[part].to(self.device)
            out = self.model.synthesize(frame0, frame1, flow01, flow10, v.t[part].to(self.device)).frames
            predictions.append(out.float().cpu())
        prediction = torch.cat(predictions)
        blend = (1 - v.t.view(-1, 1, 1, 1)) * v.frame0 + v.t.view(-1, 1, 1, 1) * v.frame1
        return psnr(prediction, v.frame_t), psnr(blend, v.frame_t)

    # -- the run -------------------------------------------------------------------------------------
    def _append_curve(self, row: dict) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / CURVE_FILE
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CURVE_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in CURVE_FIELDS})

    def run(self, on_log: Callable[[dict], None] | None = None) -> TrainState:
        """Train until ``steps`` or ``max_minutes``; checkpoints on the way, on Ctrl-C and at the end."""
        config = self.config
        deadline = time.monotonic() + config.max_minutes * 60 if config.max_minutes else math.inf
        sums: dict[str, torch.Tensor] = {}
        count = 0
        started = time.monotonic()
        try:
            while self.state.step < config.steps and time.monotonic() < deadline:
                for key, value in self.step(self.next_batch()).items():
                    sums[key] = sums[key] + value.float() if key in sums else value.float()
                count += 1
                now = time.monotonic()
                self.state.elapsed_s += now - started
                started = now
                step = self.state.step
                evaluate = self.is_chief and (step % config.eval_every == 0 or step == config.steps)
                if step % config.log_every == 0 or evaluate:
                    row = {"step": step, "elapsed_s": round(self.state.elapsed_s, 1), "samples": self.state.samples,
                           "lr": self._lr(), **{k: round(float(v) / count, 6) for k, v in sums.items() if k != "total"},
                           "loss": round(float(sums["total"]) / count, 4) if "total" in sums else 0.0}
                    if evaluate:
                        row["val_psnr"], row["val_blend_psnr"] = (round(x, 3) for x in self.evaluate())
                        self._record(row)
                    if self.is_chief:
                        self._append_curve(row)
                    if on_log:
                        on_log(row)
                    sums, count = {}, 0
                if step % config.checkpoint_every == 0:
                    self.save()
        except KeyboardInterrupt:
            log.warning("interrupted at step %d: saving a checkpoint", self.state.step)
            raise
        finally:
            self.save()
        return self.state

    def _record(self, row: dict) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.state.history.append(row)
        if row["val_psnr"] > self.state.best_val_psnr:
            self.state.best_val_psnr = row["val_psnr"]
            save_superslomo(self.model, str(self.out_dir / BEST_FILE), training=self.training_metadata())
