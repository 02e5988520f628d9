"""What a default run prints: its result, and nothing from Ray or Prefect the user cannot act on (`-v` shows it)."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from clips import make_clip, moving_square_frames

# Settings that would hide the noise by themselves: a user's shell has none of them.
_QUIETING = ("RAY_AUTH_MODE", "RAY_LOGGER_LEVEL", "RAY_LOG_TO_DRIVER", "PREFECT_LOGGING_LEVEL")


def _run_cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    clip = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(5, 32, 32), list(range(5)), Fraction(1, 25))
    env = {k: v for k, v in os.environ.items() if k not in _QUIETING and not k.startswith("PREFECT_")}
    env["HOME"] = str(tmp_path / "home")  # a first run: fresh Prefect database, Ray's token made on the spot
    (tmp_path / "home").mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "flows.cli", *extra, "convert", clip, str(tmp_path / "out.mp4"), "--factor", "2",
            "--chunk-frames", "2", "-q", "--flow"]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240, check=False)


def test_a_default_flow_run_prints_its_result_and_nothing_else(tmp_path: Path) -> None:
    result = _run_cli(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "5 -> 9 frames in 2 chunk(s)" in result.stdout
    assert result.stderr == "", result.stderr  # no token-auth warning, no "Started a local Ray", no telemetry error


@pytest.mark.slow  # a second full flow run (~35 s on 2 cores) only to show what -v brings back
def test_verbose_shows_what_the_default_run_hides(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "-v")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Token authentication is enabled" in result.stderr and "Started a local Ray instance" in result.stderr
