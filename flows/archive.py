"""Batch flows: convert a whole archive on a schedule, or backfill a chosen set on demand.

Both are idempotent: a video whose output for exactly these settings is finished (its job's DONE marker
and the output object exist) is skipped, so re-running converts only what is new or failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from slomo_core.credentials import refuse_credentials
from slomo_core.errors import SlomoError
from slomo_core.keys import UnsafeKeyError, absolute_location, common_prefix, output_for, relative_key
from slomo_core.lease import Heartbeat, JobLease, LeaseHeldError, LeaseOwner
from slomo_core.settings import ConversionSettings
from slomo_core.storage import StorageOptions, list_files
from tasks.conversion import chunk_actors, connect_ray, interpolate_task, plan_task, report_task, stitch_task
from tasks.pool import ActorPool

VIDEO_PATTERN = "**/*.mp4"
BEING_CONVERTED = "skipped: being converted by"  # a batch row's status when another live run holds the job's lease


class BatchFailedError(SlomoError, RuntimeError):
    """Some videos of a batch failed or were rejected, each named in the batch table; the others ran.
    A SlomoError, so the CLI prints it as one line."""


def pending_videos(sources: Sequence[str], input_prefix: str, output_prefix: str, suffix: str,
                   settings: ConversionSettings, options: StorageOptions | None
                   ) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[dict[str, Any]]]:
    """(to convert, already done) as (source, output) pairs, for exactly these settings, and a failed row
    for each source whose key cannot be mirrored safely under the output prefix (the rest still run)."""
    todo, done, rejected = [], [], []
    for source in sources:
        try:
            # absolute, as the jobs record them: actors run in another working folder
            source, output = absolute_location(source), absolute_location(output_for(source, input_prefix, output_prefix, suffix))
        except UnsafeKeyError as exc:
            rejected.append({"source": source, "output": None, "status": f"failed: {exc}", "frames": None,
                             "seconds": None})
            continue
        (done if settings.is_converted(source, output, options) else todo).append((source, output))
    return todo, done, rejected


def _failure(source: str, output: str, exc: BaseException) -> dict[str, Any]:
    return {"source": source, "output": output, "status": f"failed: {type(exc).__name__}: {exc}", "frames": None,
            "seconds": None}


def _lease_group(group: Sequence[tuple[str, str]], settings: ConversionSettings, options: StorageOptions | None,
                 rows: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], JobLease]:
    """Take the lease of every video of the group. A video whose live lease another run holds gets a
    "skipped: being converted by ..." row, one that run finished meanwhile a "skipped (done)" row."""
    owner = LeaseOwner.this_process(flow_run.get_id())
    leases = {}
    for source, output in group:
        try:
            lease = JobLease(settings.layout_for(source, output, options).lease, settings.lease_seconds, options, owner,
                             subject=output)
            lease.acquire()
        except LeaseHeldError as exc:
            rows[(source, output)] = {"source": source, "output": output, "frames": None, "seconds": None,
                                      "status": f"{BEING_CONVERTED} {exc.holder.describe()}"}
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. the source vanished: this video fails alone
            rows[(source, output)] = _failure(source, output, exc)
            continue
        if settings.is_converted(source, output, options):
            lease.release()
            rows[(source, output)] = {"source": source, "output": output, "status": "skipped (done)", "frames": None,
                                      "seconds": None}
            continue
        leases[(source, output)] = lease
    return leases


def _convert_group(group: Sequence[tuple[str, str]], settings: ConversionSettings,
                   options: StorageOptions | None, actors: ActorPool) -> list[dict[str, Any]]:
    """Take the group's leases, then convert the videos this run holds (see _convert_leased); release them."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    leases = _lease_group(group, settings, options, rows)
    try:
        with Heartbeat(leases.values()):
            _convert_leased(leases, settings, options, actors, rows)
    finally:
        for lease in leases.values():
            lease.release()
    return [rows[pair] for pair in group]


def _convert_leased(leases: dict[tuple[str, str], JobLease], settings: ConversionSettings,
                    options: StorageOptions | None, actors: ActorPool,
                    rows: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Plan every leased video, interpolate all their chunks on one actor pool, stitch each.

    One bad video (unreadable source, failed chunks, lost lease) fails alone: the others are stitched,
    and its committed chunks stay for the next run. ``seconds`` counts from the start of the group.
    """
    started = time.perf_counter()
    plans = []
    for source, output in leases:
        try:
            plans.append(plan_task(source, output, settings, options, False))
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the batch
            rows[(source, output)] = _failure(source, output, exc)
    try:
        outcomes = interpolate_task(plans, settings.model_spec(), settings.pool_settings(), settings.ray_address,
                                    options, actors) if plans else []
    except Exception as exc:  # noqa: BLE001 - e.g. no actor could start: every video of the group failed
        outcomes = []
        for plan in plans:
            key = (plan.job["source_uri"], plan.job["output_uri"])
            rows[key] = _failure(*key, exc)
    for plan, plan_outcomes in zip(plans, outcomes):
        key = (plan.job["source_uri"], plan.job["output_uri"])
        try:
            if all(outcome.ok for outcome in plan_outcomes):  # else the stitch says which chunks failed
                leases[key].ensure_held()
            stitched = stitch_task(plan, plan_outcomes, options)
            summary = report_task(plan, plan_outcomes, stitched, time.perf_counter() - started, options)
            rows[key] = {"source": key[0], "output": key[1], "status": "converted", "frames": stitched.frames,
                         "seconds": summary["seconds"]}
        except Exception as exc:  # noqa: BLE001 - the other videos of the group go on
            rows[key] = _failure(*key, exc)


def _run_batch(todo: list[tuple[str, str]], done: list[tuple[str, str]], settings: ConversionSettings,
               options: StorageOptions | None, videos_per_pool: int,
               rejected: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    logger = get_run_logger()
    logger.info("%d video(s) to convert, %d already converted", len(todo), len(done))
    if videos_per_pool < 1:
        raise ValueError("videos_per_pool must be >= 1")
    rows = [{"source": s, "output": o, "status": "skipped (done)", "frames": None, "seconds": None} for s, o in done]
    rows += rejected
    if todo:
        connect_ray(settings.ray_address)  # from the flow's own thread: see connect_ray
    with chunk_actors(settings.model_spec(), settings.pool_settings(), options) as actors:  # reused by every group
        for start in range(0, len(todo), videos_per_pool):
            rows += _convert_group(todo[start : start + videos_per_pool], settings, options, actors)
    create_table_artifact(key="batch-videos", table=rows, description="videos of this batch run")
    failed = [r for r in rows if r["status"].startswith("failed")]
    if failed:
        listed = "; ".join(r["status"] for r in failed[:5])
        raise BatchFailedError(f"{len(failed)} of {len(todo) + len(rejected)} video(s) failed: {listed}")
    return rows


def _in_name_range(source: str, input_prefix: str, start_at: str | None, end_before: str | None) -> bool:
    """Whether the source's key relative to the prefix is in [start_at, end_before); an unsafe key is kept,
    so that the batch table rejects it by name."""
    try:
        key = relative_key(source, input_prefix)
    except UnsafeKeyError:
        return True
    return (start_at is None or key >= start_at) and (end_before is None or key < end_before)


@flow(name="convert-archive")
def convert_archive(
    input_prefix: str,
    output_prefix: str,
    settings: ConversionSettings,
    pattern: str = VIDEO_PATTERN,
    suffix: str = "",
    videos_per_pool: int = 16,
    storage_options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every video under ``input_prefix`` matching ``pattern`` without a finished output for these settings."""
    refuse_credentials(storage_options, "a flow run's parameters")
    settings = settings.with_weights_digest(storage_options)  # once for the whole batch
    sources = [s for s in list_files(input_prefix, pattern, storage_options) if "/.slomo-work/" not in s]
    todo, done, rejected = pending_videos(sources, input_prefix, output_prefix, suffix, settings, storage_options)
    return _run_batch(todo, done, settings, storage_options, videos_per_pool, rejected)


@flow(name="backfill")
def backfill(
    output_prefix: str,
    settings: ConversionSettings,
    sources: list[str] | None = None,
    input_prefix: str | None = None,
    pattern: str = VIDEO_PATTERN,
    start_at: str | None = None,
    end_before: str | None = None,
    videos_per_pool: int = 16,
    suffix: str = "",
    storage_options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """On demand: an explicit list, or the keys under a prefix between two names (e.g. dated folders).

    Videos go in groups of ``videos_per_pool``: a group is planned, all its chunks run on one pool of
    ``settings.workers`` actors (kept for the next group: the model loads once per actor per batch), then
    each video is stitched.
    """
    if (sources is None) == (input_prefix is None):
        raise ValueError("give either sources or input_prefix")
    refuse_credentials(storage_options, "a flow run's parameters")
    settings = settings.with_weights_digest(storage_options)  # once for the whole batch
    if sources is None:
        found = [s for s in list_files(input_prefix, pattern, storage_options) if "/.slomo-work/" not in s]
        sources = [s for s in found if _in_name_range(s, input_prefix, start_at, end_before)]
        prefix = input_prefix
    else:
        prefix = common_prefix(sources)
    todo, done, rejected = pending_videos(sources, prefix, output_prefix, suffix, settings, storage_options)
    return _run_batch(todo, done, settings, storage_options, videos_per_pool, rejected)
