"""The `convert-video` flow: probe -> plan -> interpolate (Ray actors) -> stitch -> report.

Parameters are plain values so the flow runs from the CLI, a deployment or the Prefect UI alike.
Re-running the same flow resumes: committed chunks are skipped and a finished job returns at once.
"""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any

from prefect import flow, get_run_logger

from slomo_core.interp.factory import model_weights, validate_model_choice
from slomo_core.interp.network import InferenceSettings
from slomo_core.plan import ChunkLength, JobSettings
from slomo_core.scene import DEFAULT_THRESHOLD
from slomo_core.timing import RateSpec
from slomo_core.video.encode import EncoderSettings
from tasks.chunk_workers import ModelSpec, weights_digest
from tasks.conversion import connect_ray, default_work_root, interpolate_task, plan_task, report_task, stitch_task
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
    validate_model_choice(model, weights)
    target = Fraction(fps) if fps is not None else None
    spec = RateSpec(mode or ("fps" if target is not None else "slowmo"), factor, target)  # type: ignore[arg-type]
    settings = JobSettings(
        spec=spec, encoder=EncoderSettings(codec=codec, crf=crf, preset=preset), audio_mode=audio,
        scene_threshold=scene_threshold, batch_pairs=batch_pairs, model=model, weights_uri=weights,
        weights_sha256=weights_sha256,
    )
    settings.validate()
    return settings


def job_inputs(output: str, params: dict[str, Any]) -> tuple[JobSettings, ChunkLength, str]:
    """Settings, chunk length and work root exactly as the flow derives them (shared with the CLI's
    progress display and the archive's "already converted?" check, so all agree on the job id)."""
    settings, length = job_settings(params)
    return settings, length, work_root_for(output, params)


def work_root_for(output: str, params: dict[str, Any]) -> str:
    return params.get("work_dir") or default_work_root(output)


def job_settings(params: dict[str, Any]) -> tuple[JobSettings, ChunkLength]:
    """The settings part of job_inputs: the same for every video of a batch (weights hashed once)."""
    model = params.get("model", "dis")
    options = params.get("storage_options")
    weights = model_weights(model, params.get("weights"))  # recorded by name: the job id and manifest say which
    digest = weights_digest(weights, options) if model == "superslomo" else None
    settings = build_settings(
        params.get("factor"), params.get("fps"), params.get("mode"), model, weights, digest,
        params.get("codec", "h264"), params.get("crf"), params.get("preset"), params.get("audio"),
        params.get("scene_threshold", DEFAULT_THRESHOLD), params.get("batch_pairs", 4),
    )
    frames, seconds = params.get("chunk_frames"), params.get("chunk_seconds", 10.0)
    length = ChunkLength(frames=frames) if frames else ChunkLength(seconds=seconds)
    return settings, length


def execution_for(params: dict[str, Any], settings: JobSettings) -> tuple[ModelSpec, PoolSettings]:
    """What every actor builds and how many actors run: the same for one video or a batch of them."""
    inference = InferenceSettings(
        device=params.get("device", "auto"), dtype=params.get("dtype", "auto"),
        channels_last=params.get("channels_last", True), compile=params.get("compile_network", False),
        max_batch_pixels=params.get("max_batch_pixels"),
    )
    model = ModelSpec(settings.model, settings.weights_uri, settings.weights_sha256, inference)
    return model, PoolSettings(workers=params.get("workers", 1), num_gpus_per_worker=params.get("gpus_per_worker"))


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
    gpus_per_worker: float | None = None,
    ray_address: str | None = None,
    work_dir: str | None = None,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    channels_last: bool = True,
    compile_network: bool = False,
    max_batch_pixels: int | None = None,
) -> dict[str, Any]:
    """Convert one video (any fsspec URL in and out) with a pool of ``workers`` Ray actors.

    ``gpus_per_worker``: None reserves 1 GPU per actor when the cluster shows GPUs at start; set 1 on
    autoscaling clusters whose GPU nodes start from zero, so the actors' demand brings them up.
    """
    started = time.perf_counter()
    logger = get_run_logger()
    params = locals()
    settings, length, work_root = job_inputs(output, params)
    connect_ray(ray_address)
    plan = plan_task(source, output, work_root, settings, length, storage_options, overwrite)
    model_spec, pool = execution_for(params, settings)
    (outcomes,) = interpolate_task([plan], model_spec, pool, ray_address, storage_options)
    stitched = stitch_task(plan, outcomes, storage_options)
    summary = report_task(plan, outcomes, stitched, time.perf_counter() - started, storage_options)
    logger.info("%s -> %s: %d frames in %.1f s", source, output, stitched.frames, summary["seconds"])
    return summary
