"""The `convert-video` flow: probe -> plan -> interpolate (Ray actors) -> stitch -> report.

Parameters are plain values so the flow runs from the CLI, a deployment or the Prefect UI alike.
Re-running the same flow resumes: committed chunks are skipped and a finished job returns at once.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

from prefect import flow, get_run_logger

from slomo_core.interp.network import InferenceSettings
from slomo_core.plan import ChunkLength, JobSettings
from slomo_core.scene import DEFAULT_THRESHOLD
from slomo_core.timing import RateSpec
from slomo_core.video.encode import EncoderSettings
from tasks.chunk_workers import ModelSpec, weights_digest
from tasks.conversion import default_work_root, interpolate_task, plan_task, report_task, stitch_task
from tasks.pool import PoolSettings


def build_settings(
    factor: int | None = None,
    fps: str | None = None,
    mode: str | None = None,
    model: str = "dis",
    weights: str | None = None,
    weights_sha256: str | None = None,
    codec: str = "h264",
    crf: int | None = None,
    preset: str | None = None,
    audio: str | None = None,
    scene_threshold: float | None = DEFAULT_THRESHOLD,
    batch_pairs: int = 4,
) -> JobSettings:
    """JobSettings from plain values (what flows, deployments and the CLI pass)."""
    target = Fraction(fps) if fps is not None else None
    spec = RateSpec(mode or ("fps" if target is not None else "slowmo"), factor, target)  # type: ignore[arg-type]
    settings = JobSettings(
        spec=spec, encoder=EncoderSettings(codec=codec, crf=crf, preset=preset), audio_mode=audio,
        scene_threshold=scene_threshold, batch_pairs=batch_pairs, model=model, weights_uri=weights,
        weights_sha256=weights_sha256,
    )
    settings.validate()
    return settings


@flow(name="convert-video")
def convert_video(
    source: str,
    output: str,
    factor: int | None = None,
    fps: str | None = None,
    mode: str | None = None,
    model: str = "dis",
    weights: str | None = None,
    codec: str = "h264",
    crf: int | None = None,
    preset: str | None = None,
    audio: str | None = None,
    scene_threshold: float | None = DEFAULT_THRESHOLD,
    batch_pairs: int = 4,
    chunk_seconds: float | None = 10.0,
    chunk_frames: int | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    work_dir: str | None = None,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    device: str = "auto",
    dtype: str = "fp32",
) -> dict[str, Any]:
    """Convert one video (any fsspec URL in and out) with a pool of ``workers`` Ray actors."""
    started = time.perf_counter()
    logger = get_run_logger()
    digest = weights_digest(weights, storage_options) if model == "superslomo" else None
    settings = build_settings(factor, fps, mode, model, weights, digest, codec, crf, preset, audio, scene_threshold, batch_pairs)
    length = ChunkLength(frames=chunk_frames) if chunk_frames else ChunkLength(seconds=chunk_seconds)
    work_root = work_dir or default_work_root(output)
    plan = plan_task(source, output, work_root, settings, length, storage_options, overwrite)
    model_spec = ModelSpec(model, weights, digest, InferenceSettings(device=device, dtype=dtype))
    outcomes = interpolate_task(plan, model_spec, PoolSettings(workers=workers), ray_address, storage_options)
    stitched = stitch_task(plan, outcomes, storage_options)
    summary = report_task(plan, outcomes, stitched, time.perf_counter() - started, storage_options)
    logger.info("%s -> %s: %d frames in %.1f s", source, output, stitched.frames, summary["seconds"])
    return summary
