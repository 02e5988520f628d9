"""Weights that ship with slomo: each loads, matches its card, and runs through the CLI by name."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from slomo_core.errors import CheckpointError, ConfigError
from slomo_core.interp.factory import build_interpolator, validate_model_choice
from slomo_core.model.checkpoint import load_superslomo
from slomo_core.model.shipped import (
    PREFIX,
    best_shipped,
    resolve_shipped,
    shipped_names,
    weights_dir,
)
from slomo_core.model.warp_convention import SLOMO_WARP, WarpConvention
from slomo_core.settings import ConversionSettings
from slomo_core.storage import file_sha256
from tests.clips import cfr_pts, make_clip, moving_square_frames


def test_unknown_shipped_name_is_one_clear_error() -> None:
    with pytest.raises(CheckpointError, match="no such shipped weights"):
        resolve_shipped("shipped:does-not-exist")
    with pytest.raises(CheckpointError, match="no such shipped weights"):
        validate_model_choice("superslomo", "shipped:does-not-exist")
    assert resolve_shipped("/some/path.pt") == "/some/path.pt"


def test_superslomo_without_weights_runs_the_best_shipped() -> None:
    assert best_shipped().removeprefix(PREFIX) in shipped_names()
    _, best = load_superslomo(resolve_shipped(best_shipped()))
    assert build_interpolator("superslomo", None).weights_sha256 == best.weights_sha256
    validate_model_choice("superslomo", None)
    with pytest.raises(ConfigError, match="--weights applies to --model superslomo or superslomo-dis only"):
        validate_model_choice("dis", best_shipped())


def test_jobs_record_the_default_weights_by_name() -> None:
    """The job id and manifest name the weights that ran, so a later change of "best" starts a new job."""
    settings = ConversionSettings(model="superslomo", factor=2).with_weights_digest().job_settings()
    assert settings.weights_uri == best_shipped()
    assert settings.weights_sha256 == file_sha256(resolve_shipped(best_shipped()))


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_weights_are_small_fp16_and_carded(name: str) -> None:
    path = weights_dir() / f"{name}.pt"
    assert path.stat().st_size < 16 * 2**20
    model, info = load_superslomo(str(path))  # checks the recorded weights sha256
    assert next(iter(model.parameters())).dtype.is_floating_point
    card = (weights_dir() / f"{name}.md").read_text()
    assert info.weights_sha256 in card and file_sha256(str(path)) in card
    assert "steps" in card and "factor 2" in card and "factor 8" in card  # the benchmark is on the card


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_weights_record_their_warp_convention(name: str) -> None:
    """Written in the file itself (not inferred from its age) and on the card: slomo's warp, as trained."""
    path = weights_dir() / f"{name}.pt"
    recorded = torch.load(path, map_location="cpu", weights_only=True)["warp"]
    _, info = load_superslomo(str(path))
    assert WarpConvention.from_dict(recorded) == info.config.warp == SLOMO_WARP
    assert SLOMO_WARP.describe() in (weights_dir() / f"{name}.md").read_text()


def _arch(name: str) -> str:
    """The model a shipped file runs under (its recorded architecture)."""
    return load_superslomo(resolve_shipped(PREFIX + name))[1].config.arch


@pytest.mark.parametrize("weights", [[]] + [["--weights", PREFIX + name] for name in shipped_names()])
def test_cli_runs_shipped_weights_by_name(weights: list[str], tmp_path: Path) -> None:
    source = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(4, 64, 48), cfr_pts(4), Fraction(1, 25))
    out = tmp_path / "out.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "convert", source, str(out), "--factor", "2", "--local",
         "--model", _arch(weights[1].removeprefix(PREFIX)) if weights else "superslomo", *weights, "--quiet"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0


@pytest.mark.parametrize("name", shipped_names())
def test_bf16_stays_within_half_a_db_of_fp32_on_real_footage(name: str, footage: Path) -> None:
    """Dropped-frame PSNR on carphone (every other frame rebuilt): bf16 within 0.5 dB of fp32."""
    import numpy as np

    from slomo_core.interp.base import PairRequest
    from slomo_core.interp.factory import network_interpolator
    from slomo_core.interp.network import InferenceSettings
    from slomo_core.video.decode import iter_frames

    frames = [f.image for f in iter_frames(str(footage / "carphone_pristine.mp4"), 40, 49)]
    requests = [PairRequest(frames[i], frames[i + 2], (0.5,)) for i in range(0, 8, 2)]
    truth = [frames[i + 1] for i in range(0, 8, 2)]

    def mean_psnr(dtype: str) -> float:
        model, _ = load_superslomo(resolve_shipped(PREFIX + name))
        made = network_interpolator(model, None, InferenceSettings(device="cpu", dtype=dtype)).interpolate(requests)
        errors = [np.mean((m[0].astype(float) - t.astype(float)) ** 2) for m, t in zip(made, truth)]
        return float(np.mean([10 * np.log10(255**2 / e) for e in errors]))

    assert abs(mean_psnr("bf16") - mean_psnr("fp32")) < 0.5
