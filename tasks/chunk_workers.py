"""What a Ray actor does with a chunk: load the model once, then run chunks from their manifest rows.

Only manifest rows go in and status rows come out; frames, segments and weights move through storage.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from slomo_core.chunk_worker import run_chunk
from slomo_core.errors import CheckpointError, SlomoError
from slomo_core.interp.base import FrameInterpolator
from slomo_core.interp.factory import build_interpolator
from slomo_core.interp.network import InferenceSettings
from slomo_core.manifest import ChunkSpec
from slomo_core.model.shipped import is_shipped, resolve_shipped
from slomo_core.scratch import make_scratch_dir, prune_cache, scratch_dir, sweep_stale
from slomo_core.storage import StorageOptions, localize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """Which interpolator every actor builds; weights may be any fsspec URL."""

    model: str = "dis"
    weights_uri: str | None = None
    weights_sha256: str | None = None
    inference: InferenceSettings = field(default_factory=InferenceSettings)

    def build(self, cache_dir: str, options: StorageOptions | None) -> FrameInterpolator:
        weights = _local_weights(self.weights_uri, cache_dir, options)
        interpolator = build_interpolator(self.model, weights, self.inference)
        if self.weights_sha256 and getattr(interpolator, "weights_sha256", None) != self.weights_sha256:
            raise CheckpointError(f"{self.weights_uri}: weights differ from the ones the job was planned with")
        return interpolator


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

    def process(self, row: dict[str, Any]) -> dict[str, Any]:
        """A status row. A SlomoError (bad input, changed source) is final: returned, not retried;
        anything else propagates so the pool retries the chunk on another actor."""
        spec = ChunkSpec(**row)
        try:
            status = run_chunk(spec, self.interpolator, cache_dir=self.cache_dir, options=self.options)
        except SlomoError as exc:
            log.warning("chunk %d of %s failed: %s", spec.chunk_index, spec.job_id, exc)
            return {"ok": False, "final_error": str(exc), "chunk_index": spec.chunk_index}
        finally:
            prune_cache(self.cache_dir, self.cache_bytes)
        return {"ok": True, **asdict(status)}


@dataclass(frozen=True)
class ChunkWorkerFactory:
    """Picklable: Ray ships it to each actor, which calls it once (the model loads once per actor)."""

    model: ModelSpec
    options: dict[str, Any] | None = None

    def __call__(self) -> ChunkWorker:
        return ChunkWorker(self.model, self.options, cache_dir=os.environ.get("SLOMO_CACHE_DIR"))


def _local_weights(weights_uri: str | None, cache_dir: str, options: StorageOptions | None) -> str | None:
    """A local file for any fsspec URL, or the packaged file for ``shipped:NAME``."""
    if weights_uri is None:
        return None
    if is_shipped(weights_uri):
        return resolve_shipped(weights_uri)
    return localize(weights_uri, cache_dir, options=options)


def weights_digest(weights_uri: str | None, options: StorageOptions | None = None) -> str | None:
    """The weights' content hash (what manifests record), read once by the planner."""
    if weights_uri is None:
        return None
    from slomo_core.model.checkpoint import load_superslomo

    with scratch_dir("slomo-weights-") as cache:
        _, info = load_superslomo(_local_weights(weights_uri, cache, options))
    return info.weights_sha256
