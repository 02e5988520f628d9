"""Batch flows: convert a whole archive on a schedule, or backfill a chosen set on demand.

Both are idempotent: a video whose output for exactly these settings is finished (its job's DONE marker
and the output object exist) is skipped, so re-running converts only what is new or failed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.convert import convert_video, job_settings, work_root_for
from slomo_core.scene import DEFAULT_THRESHOLD
from slomo_core.storage import join, list_files
from tasks.conversion import connect_ray, is_converted

VIDEO_PATTERN = "**/*.mp4"


def output_for(source: str, input_prefix: str, output_prefix: str, suffix: str = "") -> str:
    """Mirror the source's path under the output prefix; ``suffix`` goes before the extension."""
    relative = source[len(input_prefix.rstrip("/")) :].lstrip("/")
    stem, ext = posixpath.splitext(relative)
    return join(output_prefix, f"{stem}{suffix}{ext or '.mp4'}")


def _conversion_params(params: dict[str, Any]) -> dict[str, Any]:
    keys = ("factor", "fps", "mode", "model", "weights", "codec", "crf", "preset", "audio", "scene_threshold",
            "batch_pairs", "chunk_seconds", "chunk_frames", "workers", "gpus_per_worker", "ray_address", "storage_options",
            "work_dir", "device", "dtype", "channels_last", "compile_network", "max_batch_pixels")
    return {k: params[k] for k in keys if k in params}


def pending_videos(sources: Sequence[str], input_prefix: str, output_prefix: str, suffix: str,
                   params: dict[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(to convert, already done) as (source, output) pairs, for exactly these settings."""
    options = params.get("storage_options")
    settings, length = job_settings(params)
    todo, done = [], []
    for source in sources:
        output = output_for(source, input_prefix, output_prefix, suffix)
        finished = is_converted(source, output, work_root_for(output, params), settings, length, options)
        (done if finished else todo).append((source, output))
    return todo, done


@task(name="convert-one", cache_policy=NO_CACHE)
def convert_one(source: str, output: str, params: dict[str, Any]) -> dict[str, Any]:
    """One video as a subflow; a failure is reported, not raised, so other videos go on."""
    try:
        return {"source": source, "output": output, "ok": True, **convert_video(source, output, **params)}
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the batch
        return {"source": source, "output": output, "ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _run_batch(todo: list[tuple[str, str]], done: list[tuple[str, str]], params: dict[str, Any],
               concurrency: int = 1) -> list[dict[str, Any]]:
    logger = get_run_logger()
    logger.info("%d video(s) to convert, %d already converted", len(todo), len(done))
    if todo:
        connect_ray(params.get("ray_address"))  # from the flow's own thread: see connect_ray
    results = []
    for start in range(0, len(todo), concurrency):  # waves of `concurrency` subflows
        futures = [convert_one.submit(s, o, params) for s, o in todo[start : start + concurrency]]
        results += [f.result() for f in futures]
    rows = [{"source": s, "output": o, "status": "skipped (done)", "frames": None, "seconds": None} for s, o in done]
    rows += [{"source": r["source"], "output": r["output"], "status": "converted" if r["ok"] else f"failed: {r['error']}",
              "frames": r.get("output_frames"), "seconds": r.get("seconds")} for r in results]
    create_table_artifact(key="batch-videos", table=rows, description="videos of this batch run")
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(results)} video(s) failed: " + "; ".join(r["error"] for r in failed[:5]))
    return rows


@flow(name="convert-archive", task_runner=ThreadPoolTaskRunner(max_workers=1))
def convert_archive(
    input_prefix: str,
    output_prefix: str,
    pattern: str = VIDEO_PATTERN,
    suffix: str = "",
    factor: int | None = 4,
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
    device: str = "auto",
    dtype: str = "auto",
    channels_last: bool = True,
    compile_network: bool = False,
    max_batch_pixels: int | None = None,
) -> list[dict[str, Any]]:
    """Every video under ``input_prefix`` matching ``pattern`` without a finished output for these settings."""
    params = _conversion_params(locals())
    sources = [s for s in list_files(input_prefix, pattern, storage_options) if "/.slomo-work/" not in s]
    todo, done = pending_videos(sources, input_prefix, output_prefix, suffix, params)
    return _run_batch(todo, done, params)


@flow(name="backfill", task_runner=ThreadPoolTaskRunner(max_workers=16))
def backfill(
    output_prefix: str,
    sources: list[str] | None = None,
    input_prefix: str | None = None,
    pattern: str = VIDEO_PATTERN,
    start_at: str | None = None,
    end_before: str | None = None,
    concurrency: int = 1,
    suffix: str = "",
    factor: int | None = 4,
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
    device: str = "auto",
    dtype: str = "auto",
    channels_last: bool = True,
    compile_network: bool = False,
    max_batch_pixels: int | None = None,
) -> list[dict[str, Any]]:
    """On demand: an explicit list, or the keys under a prefix between two names (e.g. dated folders).

    ``concurrency`` videos convert at once (each with its own ``workers`` actors).
    """
    if (sources is None) == (input_prefix is None):
        raise ValueError("give either sources or input_prefix")
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    params = _conversion_params(locals())
    if sources is None:
        found = [s for s in list_files(input_prefix, pattern, storage_options) if "/.slomo-work/" not in s]
        base = input_prefix.rstrip("/")
        sources = [s for s in found
                   if (start_at is None or s[len(base):].lstrip("/") >= start_at)
                   and (end_before is None or s[len(base):].lstrip("/") < end_before)]
        prefix = input_prefix
    else:
        prefix = posixpath.commonpath([s.split("://", 1)[-1] for s in sources]) if len(sources) > 1 else \
            posixpath.dirname(sources[0].split("://", 1)[-1])
        scheme = sources[0].split("://", 1)[0] + "://" if "://" in sources[0] else ""
        prefix = scheme + prefix
    todo, done = pending_videos(sources, prefix, output_prefix, suffix, params)
    return _run_batch(todo, done, params, concurrency)
