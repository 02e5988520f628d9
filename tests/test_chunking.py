"""Chunked jobs: the golden rule (any chunking = one chunk, frame for frame), manifests, resume, stitching."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from slomo_core.chunk_attempt import run_chunk
from slomo_core.convert import ConvertOptions, convert_locally
from slomo_core.errors import ConfigError, InputError
from slomo_core.interp.dis import DISInterpolator
from slomo_core.manifest import SCHEMA_VERSION, read_manifest, read_status, write_manifest
from slomo_core.plan import ChunkLength, JobSettings, chunk_boundaries, plan_job
from slomo_core.stitch import IncompleteJobError, stitch_job
from slomo_core.timestamps import RateSpec
from slomo_core.video.decode import iter_frames
from slomo_core.video.encode import EncoderSettings
from slomo_core.video.probe import probe, read_frame_index

from clips import make_clip, moving_square_frames

LOSSLESS = EncoderSettings(codec="ffv1")


def _decoded(path: Path) -> tuple[list[np.ndarray], list[Fraction]]:
    tb = probe(str(path)).time_base
    frames = list(iter_frames(str(path)))
    return [f.image for f in frames], [f.pts * tb for f in frames]


def _with_cut(n: int, at: int) -> list[np.ndarray]:
    a = moving_square_frames(at, 80, 48, dx=3, seed=1)
    rng = np.random.default_rng(5)
    other = np.clip(rng.normal(90, 50, (48, 80, 3)), 0, 255).astype(np.uint8)
    return a + [np.ascontiguousarray(np.roll(other, 3 * k, axis=1)) for k in range(n - at)]


@pytest.fixture(scope="module")
def gop4_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """12 frames, keyframes every 4, a scene cut between frames 6 and 7, irregular (VFR) timestamps."""
    folder = tmp_path_factory.mktemp("golden")
    pts = [0, 40, 80, 130, 160, 200, 240, 290, 320, 360, 400, 480]
    return make_clip(str(folder / "src.mp4"), _with_cut(12, 7), pts, Fraction(1, 1000), gop_size=4, bframes=True)


@pytest.mark.parametrize(
    "spec", [RateSpec("slowmo", factor=3), RateSpec("fps", factor=2), RateSpec("fps", target_fps=Fraction(60))],
    ids=["slowmo3", "fps2", "fps60"],
)
def test_golden_any_chunking_equals_one_chunk(tmp_path: Path, gop4_clip: str, spec: RateSpec) -> None:
    dis = DISInterpolator()
    reference = tmp_path / "one.mp4"
    convert_locally(gop4_clip, str(reference), dis, ConvertOptions(spec, encoder=LOSSLESS))
    ref_frames, ref_times = _decoded(reference)
    assert read_frame_index(gop4_clip).keyframes == [0, 4, 8]
    for frames_per_chunk in (1, 2, 3, 5):  # 1-pair chunks, and boundaries off the keyframes
        out = tmp_path / f"chunks{frames_per_chunk}.mp4"
        report = convert_locally(gop4_clip, str(out), dis,
                               ConvertOptions(spec, encoder=LOSSLESS, chunk=ChunkLength(frames=frames_per_chunk)))
        assert report.chunks > 1
        frames, times = _decoded(out)
        assert times == ref_times
        assert len(frames) == len(ref_frames)
        for k, (a, b) in enumerate(zip(frames, ref_frames)):
            assert np.array_equal(a, b), f"frame {k} differs with {frames_per_chunk}-frame chunks"


def test_ntsc_timestamps_survive_chunking(tmp_path: Path) -> None:
    pts = [i * 1001 for i in range(9)]
    src = make_clip(str(tmp_path / "ntsc.mp4"), moving_square_frames(9, 64, 48), pts, Fraction(1, 30000), gop_size=3)
    out = tmp_path / "ntsc_x2.mp4"
    convert_locally(src, str(out), DISInterpolator(), ConvertOptions(RateSpec("fps", factor=2), chunk=ChunkLength(frames=3)))
    _, times = _decoded(out)
    assert times == [Fraction(k * 1001, 60000) for k in range(17)]


def test_chunk_boundaries_snap_to_keyframes() -> None:
    assert chunk_boundaries(10, [], None) == [(0, 10)]
    assert chunk_boundaries(10, [], 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_boundaries(100, [0, 23, 52, 77], 25) == [(0, 23), (23, 52), (52, 77), (77, 100)]
    assert chunk_boundaries(5, [0, 1, 2, 3, 4], 1) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    with pytest.raises(ConfigError):
        chunk_boundaries(0, [], 3)


def _plan(src: str, tmp_path: Path, frames: int = 3):
    settings = JobSettings(RateSpec("slowmo", factor=2), encoder=LOSSLESS)
    return plan_job(src, str(tmp_path / "out.mp4"), str(tmp_path / "work"), settings, ChunkLength(frames=frames),
                    cache_dir=str(tmp_path / "cache"))


def test_manifest_is_versioned_immutable_and_self_describing(tmp_path: Path) -> None:
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(7, 48, 32), list(range(7)), Fraction(1, 25))
    plan = _plan(src, tmp_path)
    assert write_manifest(plan.layout.manifest, plan.chunks, plan.job) is True
    assert write_manifest(plan.layout.manifest, plan.chunks, plan.job) is False  # same plan: a re-run
    chunks, job = read_manifest(plan.layout.manifest)
    assert chunks == plan.chunks and job["output_frames"] == 13
    meta = pq.read_schema(plan.layout.manifest).metadata
    assert f'"schema_version": {SCHEMA_VERSION}'.encode() in meta[b"slomo.manifest"]
    assert [(c.first_frame, c.last_frame) for c in chunks] == [(0, 3), (3, 6)]
    assert sum(c.expected_frames for c in chunks) == 13 and [c.is_last for c in chunks] == [False, True]
    row = chunks[0]
    assert row.source_size > 0 and row.source_etag and row.input_time_base == "1/25" and row.codec == "ffv1"
    changed = [chunks[0].__class__(**{**chunks[0].__dict__, "crf": 3})] + chunks[1:]
    with pytest.raises(ConfigError, match="immutable"):
        write_manifest(plan.layout.manifest, changed, job)


def test_resume_redoes_only_missing_chunks(tmp_path: Path) -> None:
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(10, 48, 32), list(range(10)), Fraction(1, 25))
    plan = _plan(src, tmp_path)
    write_manifest(plan.layout.manifest, plan.chunks, plan.job)
    dis = DISInterpolator()
    first = run_chunk(plan.chunks[0], dis, cache_dir=str(tmp_path / "cache"))
    assert first.ok and not first.skipped and first.frames == 6
    with pytest.raises(IncompleteJobError) as missing:
        stitch_job(plan.chunks, cache_dir=str(tmp_path / "cache"))
    assert missing.value.missing == [1, 2]
    again = [run_chunk(c, dis, cache_dir=str(tmp_path / "cache")) for c in plan.chunks]
    assert [s.skipped for s in again] == [True, False, False]
    assert again[0].segment_uri == first.segment_uri
    report = stitch_job(plan.chunks, cache_dir=str(tmp_path / "cache"))
    assert report.frames == 19 and Path(report.output_uri).exists()
    assert stitch_job(plan.chunks, cache_dir=str(tmp_path / "cache")).already_done
    statuses = sorted((tmp_path / "work").rglob("status/*.parquet"))
    assert len(statuses) == 3 and read_status(str(statuses[0]))[0].frames in (6, 7)


def test_source_changed_after_planning_fails_the_chunk(tmp_path: Path) -> None:
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(6, 48, 32), list(range(6)), Fraction(1, 25))
    plan = _plan(src, tmp_path)
    make_clip(src, moving_square_frames(8, 48, 32), list(range(8)), Fraction(1, 25))
    with pytest.raises(InputError, match="changed since the job was planned"):
        run_chunk(plan.chunks[0], DISInterpolator(), cache_dir=str(tmp_path / "cache"))
    failures = list((tmp_path / "work").rglob("status/*.parquet"))
    assert len(failures) == 1 and "changed" in read_status(str(failures[0]))[0].error
