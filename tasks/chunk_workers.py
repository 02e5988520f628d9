"""What a Ray actor does with a chunk: load the model once, then run chunks from their manifest rows.

Only manifest rows go in and status rows come out; frames, segments and weights move through storage.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any

from slomo_core.chunk_attempt import run_chunk, worker_id
from slomo_core.errors import SlomoError, StorageError
from slomo_core.interp.factory import ModelSpec
from slomo_core.manifest import ChunkResult, ChunkSpec
from slomo_core.scratch import make_scratch_dir, prune_cache, sweep_stale
from slomo_core.storage import StorageOptions

log = logging.getLogger(__name__)


CACHE_BYTES = 2 << 30  # copies of remote inputs an actor keeps (least recently used go first)


class ChunkWorker:
    """Lives inside one actor: one interpolator, one bounded local cache, many chunks.

    Starting, it removes scratch folders that killed slomo processes left on this node; ``close`` (called
    when the pool shuts down) removes its own cache.
    """

    def __init__(self, model: ModelSpec, options: StorageOptions | None, cache_dir: str | None = None,
                 cache_bytes: int = CACHE_BYTES) -> None:
        sweep_stale()
        self.options = dict(options or {})
        self._owns_cache = cache_dir is None
        self.cache_dir = cache_dir or make_scratch_dir("slomo-actor-cache-")
        self.cache_bytes = cache_bytes
        try:
            self.interpolator = model.build(self.cache_dir, self.options)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._owns_cache:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def process(self, row: dict[str, Any]) -> ChunkResult:
        """The chunk's result. A SlomoError (bad input, changed source) is final: returned, not retried;
        anything else, storage faults included (a full disk, a lost endpoint), propagates so the pool
        retries the chunk on another actor."""
        spec = ChunkSpec(**row)
        try:
            status = run_chunk(spec, self.interpolator, cache_dir=self.cache_dir, options=self.options)
        except StorageError:
            raise
        except SlomoError as exc:
            log.warning("chunk %d of %s failed: %s", spec.chunk_index, spec.job_id, exc)
            return ChunkResult(spec.chunk_index, False, worker=worker_id(), error=str(exc))
        finally:
            prune_cache(self.cache_dir, self.cache_bytes)
        return ChunkResult.from_status(status)


@dataclass(frozen=True)
class ChunkWorkerFactory:
    """Picklable: Ray ships it to each actor, which calls it once (the model loads once per actor)."""

    model: ModelSpec
    options: dict[str, Any] | None = None

    def __call__(self) -> ChunkWorker:
        return ChunkWorker(self.model, self.options, cache_dir=os.environ.get("SLOMO_CACHE_DIR"))
