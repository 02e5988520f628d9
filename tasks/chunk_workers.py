"""What a Ray actor does with a chunk: load the model once, then run chunks from their manifest rows.

Only manifest rows go in and status rows come out; frames, segments and weights move through storage.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from slomo_core.chunk_attempt import run_chunk, worker_id
from slomo_core.errors import SlomoError
from slomo_core.interp.factory import ModelSpec
from slomo_core.manifest import ChunkResult, ChunkSpec
from slomo_core.storage import StorageOptions

log = logging.getLogger(__name__)


class ChunkWorker:
    """Lives inside one actor: one interpolator, one local cache, many chunks."""

    def __init__(self, model: ModelSpec, options: StorageOptions | None, cache_dir: str | None = None) -> None:
        self.options = dict(options or {})
        self.cache_dir = cache_dir or tempfile.mkdtemp(prefix="slomo-actor-cache-")
        self.interpolator = model.build(self.cache_dir, self.options)

    def process(self, row: dict[str, Any]) -> ChunkResult:
        """The chunk's result. A SlomoError (bad input, changed source) is final: returned, not retried;
        anything else propagates so the pool retries the chunk on another actor."""
        spec = ChunkSpec(**row)
        try:
            status = run_chunk(spec, self.interpolator, cache_dir=self.cache_dir, options=self.options)
        except SlomoError as exc:
            log.warning("chunk %d of %s failed: %s", spec.chunk_index, spec.job_id, exc)
            return ChunkResult(spec.chunk_index, False, worker=worker_id(), error=str(exc))
        return ChunkResult.from_status(status)


@dataclass(frozen=True)
class ChunkWorkerFactory:
    """Picklable: Ray ships it to each actor, which calls it once (the model loads once per actor)."""

    model: ModelSpec
    options: dict[str, Any] | None = None

    def __call__(self) -> ChunkWorker:
        return ChunkWorker(self.model, self.options, cache_dir=os.environ.get("SLOMO_CACHE_DIR"))
