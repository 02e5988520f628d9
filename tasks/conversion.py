"""Prefect tasks of a conversion: plan, interpolate (on the Ray actor pool), stitch, report.

Coarse grain on purpose: Prefect sees four steps with retries and artifacts; Ray does the heavy work.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from slomo_core.chunk_attempt import committed_segment
from slomo_core.errors import OutputError, SlomoError
from slomo_core.interp.factory import ModelSpec
from slomo_core.manifest import ChunkResult, ChunkSpec, DoneRecord, JobSummary, write_manifest
from slomo_core.plan import Plan, plan_job
from slomo_core.progress import JobProgress, job_progress, rate_line
from slomo_core.scratch import scratch_dir, sweep_stale
from slomo_core.settings import ConversionSettings, PoolSettings
from slomo_core.stitch import StitchReport, stitch_job
from slomo_core.storage import exists
from tasks.chunk_workers import ChunkWorkerFactory
from tasks.pool import ActorPool, ItemResult, ensure_ray, run_pool, start_local_ray

log = logging.getLogger(__name__)


class ChunksFailedError(SlomoError):
    """Some chunks failed for good; the rest are committed, so a re-run redoes only these."""


def connect_ray(ray_address: str | None, logging_level: int = logging.INFO) -> None:
    """Attach to ``ray_address``, or start a private local Ray (never a cluster someone else started here) whose
    driver logs at ``logging_level`` (the CLI passes its own, so a plain run prints no Ray INFO lines).

    Flows call this from their own (main) thread first: Ray's local processes die with the thread that
    started them, so starting Ray inside a task-runner thread would end it when that thread does.
    """
    if ray_address:
        ensure_ray(ray_address)
    else:
        start_local_ray(include_dashboard=False, object_store_memory=256 * 1024 * 1024, logging_level=logging_level)


@task(name="plan", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def plan_task(source_uri: str, output_uri: str, settings: ConversionSettings, options: dict | None,
              overwrite: bool) -> Plan:
    """Probe, plan and write the manifest (an identical existing one means a resumed run). First, remove the
    scratch folders killed runs left in this machine's temp dir (actors do the same on their nodes)."""
    sweep_stale()
    with scratch_dir("slomo-plan-") as cache:
        plan = plan_job(source_uri, output_uri, settings.work_root(output_uri), settings.job_settings(),
                        settings.chunk_length, cache_dir=cache, options=options)
    done = exists(plan.layout.done, options)
    if exists(output_uri, options) and not done and not overwrite:
        raise OutputError(f"{output_uri}: already exists (pass --overwrite to replace it)")
    created = write_manifest(plan.layout.manifest, plan.chunks, plan.job, options)
    log.info("job %s: %d chunks, manifest %s (%s)", plan.job["job_id"], len(plan.chunks), plan.layout.manifest,
             "new" if created else "resumed")
    return plan


class FrameArtifact:
    """The Prefect progress artifact of a group of jobs, in output frames with rate and ETA.

    A thread reads the jobs' progress from storage (commit markers and the records chunk attempts rewrite
    as they render) every ``interval`` seconds, so a one-chunk job moves too; the last read is on exit.
    """

    def __init__(self, plans: Sequence[Plan], options: dict | None, interval: float = 2.0) -> None:
        self.plans, self.options, self.interval = plans, options, interval
        self.started, self.first = time.monotonic(), self.read()
        what = f"job {plans[0].job['job_id']}" if len(plans) == 1 else f"{len(plans)} jobs"
        self.artifact_id = create_progress_artifact(progress=self.first.percent, key="frame-progress",
                                                    description=f"output frames of {what}: {rate_line(self.first, 0, 0)}")
        self._stop = threading.Event()
        # Prefect finds its API through context variables, which a new thread does not inherit by itself.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                        name="slomo-frame-artifact", daemon=True)

    def read(self) -> JobProgress:
        return sum((job_progress(plan.chunks, self.options) for plan in self.plans), JobProgress(0, 0))

    def update(self) -> None:
        progress = self.read()
        line = rate_line(progress, progress.done - self.first.done, time.monotonic() - self.started)
        update_progress_artifact(self.artifact_id, progress=progress.percent, description=line)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.update()
            except Exception:  # progress is cosmetic: never let it break a run
                log.debug("progress artifact update failed", exc_info=True)

    def __enter__(self) -> FrameArtifact:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.update()
        except Exception:
            log.debug("progress artifact update failed", exc_info=True)


def _settled(chunk: ChunkSpec, item: ItemResult) -> ChunkResult:
    """The worker's ChunkResult with the pool's attempt count, or the pool's error when no worker returned one."""
    if item.ok and isinstance(item.value, ChunkResult):
        return replace(item.value, attempts=item.attempts, worker=item.worker or item.value.worker)
    return ChunkResult(chunk.chunk_index, False, attempts=item.attempts, worker=item.worker,
                       error=item.error or "unknown failure")


def chunk_actors(model: ModelSpec, pool: PoolSettings, options: dict | None) -> ActorPool:
    """Chunk workers kept across the groups of a batch: each actor loads the model once per batch."""
    return ActorPool(ChunkWorkerFactory(model, options), pool)


@task(name="interpolate", cache_policy=NO_CACHE)
def interpolate_task(plans: Sequence[Plan], model: ModelSpec, pool: PoolSettings, ray_address: str | None,
                     options: dict | None, actors: ActorPool | None = None) -> list[list[ChunkResult]]:
    """Run every uncommitted chunk of every plan on one actor pool (the model loads once per actor for
    the whole group, and short videos do not leave actors idle); a live progress artifact of output frames
    for the group and a chunk table per job. Returns each plan's outcomes in chunk order.

    ``actors`` (from :func:`chunk_actors` with the same model, pool and options) are reused and left
    running for the next group; without them, the pool's actors end with this task."""
    factory = ChunkWorkerFactory(model, options)
    if actors is not None and (actors.worker_factory != factory or actors.settings != pool):
        raise ValueError("the actors given were built for another model, pool or storage options")
    outcomes: list[dict[int, ChunkResult]] = [{} for _ in plans]
    pending: dict[str, tuple[int, ChunkSpec]] = {}
    for n, plan in enumerate(plans):
        for chunk in plan.chunks:
            marker = committed_segment(chunk, options)
            if marker is None:
                pending[f"{plan.job['job_id']}/{chunk.chunk_id}"] = (n, chunk)
            else:
                outcomes[n][chunk.chunk_index] = ChunkResult.from_marker(chunk.chunk_index, marker)
    def settle(result: ItemResult) -> ChunkResult:
        n, chunk = pending[result.key]
        outcome = outcomes[n][chunk.chunk_index] = _settled(chunk, result)
        return outcome

    with FrameArtifact(plans, options):
        if pending:
            connect_ray(ray_address)

            def on_result(result: ItemResult) -> None:
                outcome = settle(result)
                log.info("%s: %s", result.key, "ok" if outcome.ok else outcome.error)

            items = [(key, asdict(chunk)) for key, (_, chunk) in pending.items()]
            results = actors.run(items, on_result) if actors is not None else run_pool(items, factory, pool, on_result)
            for result in results:
                settle(result)
    ordered = [[done[c.chunk_index] for c in plan.chunks] for plan, done in zip(plans, outcomes)]
    for plan, plan_outcomes in zip(plans, ordered):
        create_table_artifact(
            key="chunks",
            table=[{**asdict(o), "frames_in": f"{c.first_frame}-{c.last_frame}"} for o, c in zip(plan_outcomes, plan.chunks)],
            description=f"chunks of {plan.job['source_uri']} -> {plan.job['output_uri']}",
        )
    return ordered


@task(name="stitch", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def stitch_task(plan: Plan, outcomes: Sequence[ChunkResult], options: dict | None) -> StitchReport:
    failed = [o for o in outcomes if not o.ok]
    if failed:
        listed = "; ".join(f"chunk {o.chunk_index} (frames {plan.chunks[o.chunk_index].first_frame}-"
                           f"{plan.chunks[o.chunk_index].last_frame}): {o.error}" for o in failed[:10])
        raise ChunksFailedError(f"job {plan.job['job_id']}: {len(failed)} chunk(s) failed: {listed}")
    with scratch_dir("slomo-stitch-cache-") as cache:
        return stitch_job(plan.chunks, cache_dir=cache, options=options)


def stage_totals(chunks: Sequence[ChunkSpec], options: dict | None) -> dict[str, float]:
    """Busy seconds per stage summed over the committed chunks (each marker records its attempt's)."""
    totals: dict[str, float] = {}
    for chunk in chunks:
        marker = committed_segment(chunk, options)
        for stage, value in (marker.stage_seconds if marker else {}).items():
            totals[stage] = round(totals.get(stage, 0.0) + float(value), 3)
    return totals


@task(name="report", cache_policy=NO_CACHE)
def report_task(plan: Plan, outcomes: Sequence[ChunkResult], stitched: StitchReport, seconds: float,
                options: dict | None) -> dict[str, Any]:
    done = DoneRecord.read(plan.layout.done, options)
    summary = JobSummary(
        job={**plan.job, "output_timestamps": stitched.timestamps},
        chunks=len(outcomes),
        chunks_resumed=sum(o.skipped for o in outcomes),
        retried_chunks=sum(o.attempts > 1 for o in outcomes),
        workers=sorted({o.worker for o in outcomes if o.worker and not o.skipped}),  # this run's, not earlier runs'
        seconds=round(seconds, 2),
        output_sha256=done.sha256,
        output_frames_per_second=round(stitched.frames / seconds, 2) if seconds > 0 else None,
        stage_seconds=stage_totals(plan.chunks, options),
    ).as_dict()
    lines = "\n".join(f"| {k} | {v} |" for k, v in summary.items())
    create_markdown_artifact(markdown=f"## slomo job {plan.job['job_id']}\n\n| field | value |\n|---|---|\n{lines}\n",
                             key="job-report", description=f"{plan.job['source_uri']} -> {plan.job['output_uri']}")
    return summary

