"""The plan of a job as an immutable Parquet manifest (one row per chunk) and Parquet status rows.

Every row is self-contained, so a worker needs nothing but its row: source and its identity, the frame
and pts range, time bases, rate, model, encoder settings and where to write. The schema version lives in
the Parquet metadata; a reader refuses versions it does not know.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from slomo_core.errors import ConfigError, InputError
from slomo_core.storage import StorageOptions, exists, read_bytes, read_json, write_bytes, write_json
from slomo_core.timestamps import RateSpec
from slomo_core.video.choices import EncoderSettings

if TYPE_CHECKING:
    from slomo_core.video.colour import ColourInfo

SCHEMA_VERSION = 2  # 2: source colour, resolved output pixel format
_META_KEY = b"slomo.manifest"


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk: it owns input pairs [first_frame, last_frame) and decodes frames first..last inclusive."""

    job_id: str
    chunk_index: int
    chunk_count: int
    source_uri: str
    source_etag: str
    source_size: int
    first_frame: int
    last_frame: int
    first_pts: int
    last_pts: int
    origin_pts: int
    input_time_base: str  # "num/den"
    output_time_base: str
    mode: str
    factor: int | None
    target_fps: str | None  # "num/den"
    expected_frames: int  # output frames this chunk must produce
    is_last: bool  # emits the video's last frame (the tail)
    width: int
    height: int
    rotation: int
    rate_hint: str | None
    model: str
    weights_uri: str | None
    weights_sha256: str | None
    codec: str
    crf: int | None
    preset: str | None
    pix_fmt: str | None  # the output's, resolved from the source at planning
    colour: str | None  # the source's ColourInfo as JSON: the output carries its tags and depth
    scene_threshold: float | None
    batch_pairs: int
    work_uri: str  # the job's folder: segments, markers, status rows
    output_uri: str
    audio_mode: str
    # --dedup (JSON lists of frame indices; None when off, and in manifests planned before it existed)
    dropped_frames: str | None = None  # repeats inside the chunk, interpolated over from the kept frames
    held_frames: str | None = None  # repeats kept as they are (frozen screens, the end): pair j-1, j is held
    subtitle_mode: str = "drop"  # subtitles and chapters: copy, stretch (x N in slowmo) or drop
    sample_aspect_ratio: str | None = None  # "num/den" of non-square pixels, kept by the encoder
    field_order: str = "unknown"  # the source's (progressive or unknown: interlaced sources are refused)

    @property
    def chunk_id(self) -> str:
        return f"chunk-{self.chunk_index:05d}"

    @property
    def rate_spec(self) -> RateSpec:
        fps = Fraction(self.target_fps) if self.target_fps else None
        return RateSpec(self.mode, self.factor, fps)  # type: ignore[arg-type]

    @property
    def encoder(self) -> EncoderSettings:
        return EncoderSettings(codec=self.codec, crf=self.crf, preset=self.preset, pix_fmt=self.pix_fmt)

    @property
    def source_colour(self) -> ColourInfo | None:
        from slomo_core.video.colour import ColourInfo  # PyAV: only where a chunk is rendered

        return ColourInfo.from_json(self.colour) if self.colour else None

    @property
    def pair_count(self) -> int:
        return self.last_frame - self.first_frame


_ARROW_TYPES = {int: pa.int64(), str: pa.string(), bool: pa.bool_(), float: pa.float64()}


def _arrow_schema() -> pa.Schema:
    columns = []
    for f in fields(ChunkSpec):
        hint = str(f.type)
        base = {"int": int, "str": str, "bool": bool, "float": float}[hint.split(" ")[0].split("|")[0].strip()]
        columns.append(pa.field(f.name, _ARROW_TYPES[base], nullable="None" in hint))
    return pa.schema(columns)


MANIFEST_SCHEMA = _arrow_schema()


def _rows_table(rows: Sequence[dict], schema: pa.Schema) -> pa.Table:
    """``rows`` as a table of ``schema``. They reach Arrow as JSON lines parsed against the schema (exact for
    every int, float and string): pyarrow's Python-object converters (``from_pylist``, ``pa.array``) import
    pandas to rule out pandas inputs, 0.28 s of a short command's start-up."""
    if not rows:
        return schema.empty_table()
    lines = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    return pa_json.read_json(io.BytesIO(lines), read_options=pa_json.ReadOptions(use_threads=False),
                             parse_options=parse)


def _read_parquet(data: bytes) -> pa.Table:
    return pq.ParquetFile(io.BytesIO(data)).read(use_threads=False)  # pq.read_table imports pandas


def manifest_table(chunks: Sequence[ChunkSpec], job: dict) -> pa.Table:
    table = _rows_table([asdict(c) for c in chunks], MANIFEST_SCHEMA)
    meta = {"schema_version": SCHEMA_VERSION, "job": job}
    return table.replace_schema_metadata({_META_KEY: json.dumps(meta, sort_keys=True).encode()})


def _to_parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def write_manifest(url: str, chunks: Sequence[ChunkSpec], job: dict, options: StorageOptions | None = None) -> bool:
    """Write the manifest once; an identical existing one is kept (a re-run), a different one is an error.

    Returns True when written, False when an identical manifest was already there.
    """
    table = manifest_table(chunks, job)
    if exists(url, options):
        existing, existing_job = read_manifest(url, options)
        if list(existing) != list(chunks) or existing_job != json.loads(json.dumps(job, sort_keys=True)):
            raise ConfigError(f"{url}: a different plan already exists for this job (manifests are immutable)")
        return False
    write_bytes(url, _to_parquet(table), options)
    return True


def read_manifest(url: str, options: StorageOptions | None = None) -> tuple[list[ChunkSpec], dict]:
    try:
        table = _read_parquet(read_bytes(url, options))
    except FileNotFoundError:
        raise InputError(f"{url}: no manifest") from None
    except pa.ArrowInvalid as exc:
        raise InputError(f"{url}: not a Parquet manifest ({exc})") from None
    raw = (table.schema.metadata or {}).get(_META_KEY)
    if raw is None:
        raise InputError(f"{url}: Parquet file without slomo manifest metadata")
    meta = json.loads(raw)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{url}: manifest schema version {meta.get('schema_version')} (this slomo reads {SCHEMA_VERSION})")
    chunks = [ChunkSpec(**row) for row in table.to_pylist()]
    return chunks, meta["job"]


@dataclass(frozen=True)
class ChunkStatus:
    """What one attempt at a chunk did; small enough to travel through Ray, stored as Parquet too."""

    job_id: str
    chunk_index: int
    attempt: str
    worker: str
    started_at: float
    finished_at: float
    frames: int
    segment_uri: str | None
    sha256: str | None
    error: str | None
    skipped: bool = False  # already committed by an earlier attempt

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class CommitMarker:
    """A chunk's commit: written last by the attempt that uploaded ``segment_uri``, so it always points
    at a complete segment. ``stage_seconds`` is that attempt's busy time per stage."""

    attempt: str
    segment_uri: str
    sha256: str
    frames: int
    worker: str
    scene_cuts: list[int] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def write(self, url: str, options: StorageOptions | None = None) -> None:
        write_json(url, asdict(self), options)

    @classmethod
    def read(cls, url: str, options: StorageOptions | None = None) -> CommitMarker | None:
        """The marker at ``url``, or None when the chunk is not committed."""
        return cls(**read_json(url, options)) if exists(url, options) else None


@dataclass(frozen=True)
class DoneRecord:
    """DONE.json: the job's output was uploaded and validated (``frames`` at the planned timestamps)."""

    job_id: str
    output_uri: str
    frames: int
    sha256: str
    timestamps: str = "exact"  # or how a container's coarse clock (Matroska's 1 ms) rounded them

    def write(self, url: str, options: StorageOptions | None = None) -> None:
        write_json(url, asdict(self), options)

    @classmethod
    def read(cls, url: str, options: StorageOptions | None = None) -> DoneRecord:
        return cls(**read_json(url, options))


@dataclass(frozen=True)
class ChunkResult:
    """What became of a chunk in a run, from the worker to the job report (ChunkStatus is one attempt's
    Parquet record; this is the chunk's settled state). ``attempts`` 0: committed by an earlier run."""

    chunk_index: int
    ok: bool
    frames: int = 0
    attempts: int = 1
    worker: str | None = None
    seconds: float = 0.0
    skipped: bool = False
    error: str | None = None

    @classmethod
    def from_status(cls, status: ChunkStatus) -> ChunkResult:
        return cls(status.chunk_index, status.ok, status.frames, 1, status.worker,
                   round(status.finished_at - status.started_at, 3), status.skipped, status.error)

    @classmethod
    def from_marker(cls, chunk_index: int, marker: CommitMarker) -> ChunkResult:
        return cls(chunk_index, True, marker.frames, 0, marker.worker, 0.0, True, None)


@dataclass(frozen=True)
class JobSummary:
    """The report of one job run: the plan's job facts plus what the run did (flows return ``as_dict()``)."""

    job: dict[str, Any]
    chunks: int
    chunks_resumed: int
    retried_chunks: int
    workers: list[str]
    seconds: float
    output_sha256: str
    output_frames_per_second: float | None
    stage_seconds: dict[str, float]  # where the actors' time went: the stage to speed up

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        return {**record.pop("job"), **record}


STATUS_SCHEMA = pa.schema(
    [
        pa.field("job_id", pa.string()),
        pa.field("chunk_index", pa.int64()),
        pa.field("attempt", pa.string()),
        pa.field("worker", pa.string()),
        pa.field("started_at", pa.float64()),
        pa.field("finished_at", pa.float64()),
        pa.field("frames", pa.int64()),
        pa.field("segment_uri", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("error", pa.string()),
        pa.field("skipped", pa.bool_()),
    ]
)


def write_status(url: str, statuses: Sequence[ChunkStatus], options: StorageOptions | None = None) -> None:
    table = _rows_table([asdict(s) for s in statuses], STATUS_SCHEMA)
    write_bytes(url, _to_parquet(table), options)


def read_status(url: str, options: StorageOptions | None = None) -> list[ChunkStatus]:
    table = _read_parquet(read_bytes(url, options))
    return [ChunkStatus(**row) for row in table.to_pylist()]
