"""Data-parallel training with Ray Train: one Trainer per worker, gradients averaged by DDP.

Every worker draws its own samples (RNG seeded by rank), so the effective batch is workers x batch size.
Rank 0 validates and writes the run folder; all ranks resume from it, so on a multi-node cluster --out
must be a shared filesystem path (NFS, a mounted bucket).
"""

from __future__ import annotations

import os

from training.config import TrainConfig


def _train_worker(payload: dict) -> None:
    import ray.train
    import ray.train.torch

    from training.loop import Trainer

    context = ray.train.get_context()
    trainer = Trainer(
        TrainConfig.from_dict(payload["config"]), payload["out_dir"],
        rank=context.get_world_rank(), world_size=context.get_world_size(),
        wrap=ray.train.torch.prepare_model, device=ray.train.torch.get_device(),
    )
    state = trainer.run()
    ray.train.report({"step": state.step, "best_val_psnr": state.best_val_psnr})


def train_with_ray(config: TrainConfig, out_dir: str, workers: int, gpus_per_worker: int = 0,
                   address: str | None = None) -> None:
    """Run ``workers`` training processes on a Ray cluster (a private local one by default)."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    if not ray.is_initialized():
        ray.init(address=address or "local", include_dashboard=False)
    resources = {"CPU": max(1, config.threads or 1)}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"config": config.to_dict(), "out_dir": out_dir},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources),
        run_config=RunConfig(name="slomo-train", storage_path=os.path.join(out_dir, "ray-train")),
    )
    trainer.fit()
