"""The `convert-video` flow: plan (probe + manifest) -> interpolate (Ray actors) -> stitch -> report.

One typed parameter, ``settings``, carries every conversion option, so the flow runs from the CLI, a
deployment (``-p settings='{"factor": 8}'``) or the Prefect UI (a form) alike. Re-running the same flow
resumes: committed chunks are skipped and a finished job returns at once.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from slomo_core.credentials import refuse_credentials
from slomo_core.lease import JobLease, LeaseOwner
from slomo_core.settings import ConversionSettings
from tasks.conversion import connect_ray, interpolate_task, plan_task, report_task, stitch_task


@flow(name="convert-video")
def convert_video(
    source: str,
    output: str,
    settings: ConversionSettings,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert one video (any fsspec URL in and out) with a pool of ``settings.workers`` Ray actors.

    The job's lease is held from planning to the report: a second run of the same job fails with
    LeaseHeldError naming this one, and a run that lost its lease writes no output."""
    refuse_credentials(storage_options, "a flow run's parameters")
    started = time.perf_counter()
    logger = get_run_logger()
    settings = settings.with_weights_digest(storage_options)
    lease = JobLease(settings.layout_for(source, output, storage_options).lease, settings.lease_seconds, storage_options,
                     LeaseOwner.this_process(flow_run.get_id()), subject=output)
    with lease:
        connect_ray(settings.ray_address)
        plan = plan_task(source, output, settings, storage_options, overwrite)
        (outcomes,) = interpolate_task([plan], settings.model_spec(), settings.pool_settings(), settings.ray_address,
                                       storage_options)
        if all(outcome.ok for outcome in outcomes):  # failed chunks: the stitch says which, and writes nothing
            lease.ensure_held()
        stitched = stitch_task(plan, outcomes, storage_options)
        summary = report_task(plan, outcomes, stitched, time.perf_counter() - started, storage_options)
    logger.info("%s -> %s: %d frames in %.1f s", source, output, stitched.frames, summary["seconds"])
    return summary
