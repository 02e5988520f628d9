"""ConversionSettings: defaults written once, one-line errors, the derived pieces, one job identity."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from slomo_core.errors import CheckpointError, ConfigError
from slomo_core.plan import ChunkLength, JobLayout, plan_job
from slomo_core.settings import ConversionSettings
from slomo_core.storage import file_sha256

from clips import make_clip, moving_square_frames


def test_defaults_reach_every_derived_piece() -> None:
    settings = ConversionSettings(factor=4)
    job = settings.job_settings()
    assert job.spec.mode == "slowmo" and job.spec.factor == 4 and job.batch_pairs == 4 and job.model == "dis"
    assert settings.chunk_length == ChunkLength(seconds=10.0)
    assert settings.pool_settings().workers == 1 and settings.pool_settings().num_gpus_per_worker is None
    assert settings.model_spec().inference.channels_last is True
    assert settings.work_root("s3://b/out/a.mp4") == "s3://b/out/.slomo-work"
    assert ConversionSettings(factor=2, work_dir="/jobs").work_root("s3://b/out/a.mp4") == "/jobs"
    assert ConversionSettings(factor=2, chunk_frames=8).chunk_length == ChunkLength(frames=8)
    assert settings.lease_seconds == 60 and ConversionSettings(factor=2, lease_seconds=5).convert_options().lease_seconds == 5


def test_every_spelling_of_a_rate_is_one_job() -> None:
    ntsc = ConversionSettings(fps="59.94")
    assert ntsc.fps == "60000/1001" and ntsc.rate_spec.target_fps == Fraction(60000, 1001)
    assert ntsc.rate_spec.mode == "fps"
    assert ConversionSettings(fps="60000/1001") == ntsc
    assert ConversionSettings(fps=60).fps == "60"  # a number from a Prefect form


@pytest.mark.parametrize("values,expect", [
    ({"factor": 1}, "--factor must be >= 2, got 1"),
    ({"factor": 65}, "--factor 65 is absurd (at most 64)"),
    ({"factor": 2, "workers": 0}, "--workers must be >= 1, got 0"),
    ({"factor": 2, "gpus_per_worker": -1}, "--gpus-per-worker must be >= 0"),
    ({"factor": 2, "chunk_seconds": 0}, "--chunk-seconds must be > 0"),
    ({"factor": 2, "chunk_frames": 0}, "--chunk-frames must be >= 1, got 0"),
    ({"factor": 2, "lease_seconds": 0}, "--lease-seconds must be > 0"),
    ({"factor": 2, "batch_pairs": 0}, "--batch-pairs must be >= 1, got 0"),
    ({"factor": 2, "scene_threshold": 1.5}, "--scene-threshold 1.5 is absurd"),
    ({"factor": 2, "codec": "mpeg2"}, "--codec: Input should be"),
    ({"factor": 2, "facter": 4}, "unknown setting --facter"),
    ({}, "give --factor N or --fps RATE"),
    ({"fps": "fast"}, "not a frame rate"),
    ({"factor": 2, "audio": "copy"}, "audio cannot be copied unchanged into slow motion"),
    ({"factor": 2, "weights": "w.pt"}, "--weights applies to --model superslomo or superslomo-dis only"),
])
def test_bad_values_are_one_line_config_errors(values: dict, expect: str) -> None:
    with pytest.raises(ConfigError) as failure:
        ConversionSettings.from_values(**values)
    assert expect in str(failure.value) and "\n" not in str(failure.value)


def test_settings_are_frozen() -> None:
    with pytest.raises(Exception):
        ConversionSettings(factor=2).factor = 3  # type: ignore[misc]


def test_weights_are_hashed_from_the_file_bytes_once(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"not loaded: only hashed")
    settings = ConversionSettings(factor=2, model="superslomo", weights=str(weights))
    pinned = settings.with_weights_digest()
    assert pinned.weights_sha256 == file_sha256(str(weights))
    assert pinned.with_weights_digest() is pinned  # already pinned: not hashed again
    assert pinned.job_settings().weights_sha256 == pinned.weights_sha256 == pinned.model_spec().weights_sha256
    assert ConversionSettings(factor=2).with_weights_digest().weights_sha256 is None


def test_planning_and_layout_for_agree_on_the_job(tmp_path: Path) -> None:
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(5, 32, 32), list(range(5)), Fraction(1, 25))
    output = str(tmp_path / "out.mp4")
    settings = ConversionSettings(factor=2, chunk_frames=2)
    plan = plan_job(src, output, settings.work_root(output), settings.job_settings(), settings.chunk_length,
                    cache_dir=str(tmp_path / "cache"))
    layout = settings.layout_for(src, output)
    assert isinstance(layout, JobLayout) and layout.work_uri == plan.layout.work_uri
    assert layout.job_id == plan.job["job_id"] == plan.chunks[0].job_id
    other = ConversionSettings(factor=2, chunk_frames=3).layout_for(src, output)
    assert other.job_id != layout.job_id
    assert not settings.is_converted(src, output)


def test_the_library_imports_without_prefect_or_ray() -> None:
    """slomo_core is the pure library: importing every module of it must not load Prefect or Ray."""
    code = (
        "import importlib, pkgutil, sys, slomo_core\n"
        "for m in pkgutil.walk_packages(slomo_core.__path__, 'slomo_core.'): importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('prefect', 'ray')))\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.strip() == "[]", result.stdout


def test_a_worker_refuses_weights_other_than_the_planned_ones(tmp_path: Path) -> None:
    import torch

    from slomo_core.errors import CheckpointError
    from slomo_core.model.checkpoint import save_superslomo
    from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig

    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    save_superslomo(SuperSloMo(SuperSloMoConfig(widths=(4, 8, 8, 8, 8, 8))), str(weights))
    planned = ConversionSettings(factor=2, model="superslomo", weights=str(weights), device="cpu").with_weights_digest()
    assert planned.model_spec().build(str(tmp_path / "cache"), None).name
    save_superslomo(SuperSloMo(SuperSloMoConfig(widths=(4, 8, 8, 8, 8, 8))), str(weights))  # other weights, same path
    with pytest.raises(CheckpointError, match="differ from the ones the job was planned with"):
        planned.model_spec().build(str(tmp_path / "cache"), None)


def test_the_network_without_weights_runs_the_best_shipped_ones() -> None:
    from slomo_core.model.shipped import best_shipped

    assert ConversionSettings(factor=2, model="superslomo").weights == best_shipped()
    assert ConversionSettings(factor=2).weights is None
    with pytest.raises(CheckpointError, match="no such shipped weights"):
        ConversionSettings(factor=2, model="superslomo", weights="shipped:nope")
