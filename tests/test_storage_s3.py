"""Jobs whose input, work folder and output live in S3 (moto's server on 127.0.0.1, through s3fs)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest
import s3fs
from moto.server import ThreadedMotoServer

from flows.convert import convert_video
from slomo_core.chunk_attempt import run_chunk
from slomo_core.interp.dis import DISInterpolator
from slomo_core.manifest import read_manifest, write_manifest
from slomo_core.plan import ChunkLength, JobSettings, plan_job
from slomo_core.settings import ConversionSettings
from slomo_core.stitch import stitch_job
from slomo_core.storage import download, identity, list_files, localize, upload
from slomo_core.timestamps import RateSpec
from slomo_core.video.probe import probe, read_frame_timestamps
from tasks.conversion import ChunksFailedError

from clips import make_clip, moving_square_frames


def test_s3_round_trip_and_identity(tmp_path: Path, s3_bucket) -> None:
    bucket, options = s3_bucket
    local = tmp_path / "a.bin"
    local.write_bytes(b"x" * 1000)
    upload(str(local), f"{bucket}/in/a.bin", options)
    ident = identity(f"{bucket}/in/a.bin", options)
    assert ident.size == 1000 and ident.etag
    cached = localize(f"{bucket}/in/a.bin", str(tmp_path / "cache"), ident, options)
    assert Path(cached).read_bytes() == b"x" * 1000
    download(f"{bucket}/in/a.bin", str(tmp_path / "b.bin"), options)
    assert list_files(f"{bucket}/in", "*.bin", options) == [f"{bucket}/in/a.bin"]


def test_chunked_job_entirely_in_s3(tmp_path: Path, s3_bucket) -> None:
    bucket, options = s3_bucket
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(9, 64, 48), list(range(9)), Fraction(1, 25), audio=True)
    upload(src, f"{bucket}/videos/in.mp4", options)
    settings = JobSettings(RateSpec("fps", factor=2))
    plan = plan_job(f"{bucket}/videos/in.mp4", f"{bucket}/out/in_x2.mp4", f"{bucket}/work", settings,
                    ChunkLength(frames=3), cache_dir=str(tmp_path / "cache"), options=options)
    write_manifest(plan.layout.manifest, plan.chunks, plan.job, options)
    assert read_manifest(plan.layout.manifest, options)[0] == plan.chunks
    dis = DISInterpolator()
    for chunk in plan.chunks:
        assert run_chunk(chunk, dis, cache_dir=str(tmp_path / "worker-cache"), options=options).ok
    report = stitch_job(plan.chunks, cache_dir=str(tmp_path / "stitch-cache"), options=options)
    fs = s3fs.S3FileSystem(**options)
    work = f"{bucket[5:]}/work/{plan.job['job_id']}"
    assert fs.exists(f"{work}/manifest.parquet") and fs.exists(f"{work}/DONE.json")
    assert len(fs.ls(f"{work}/commits")) == len(plan.chunks) == 3
    download(report.output_uri, str(tmp_path / "result.mp4"), options)
    assert len(read_frame_timestamps(str(tmp_path / "result.mp4"))) == 17
    assert probe(str(tmp_path / "result.mp4")).audio is not None


@pytest.mark.parametrize("credentials,expect", [
    (False, "NoCredentialsError: Unable to locate credentials; credentials come from the environment"),
    (True, "EndpointConnectionError: Could not connect to the endpoint URL"),
])
def test_unreachable_storage_is_one_line_before_anything_starts(tmp_path: Path, credentials: bool, expect: str) -> None:
    """No endpoint, or no credentials: one line and exit 1, before Prefect or Ray start (no traceback)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    if credentials:
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    result = subprocess.run([sys.executable, "-m", "flows.cli", "convert", "s3://b/in.mp4", str(tmp_path / "o.mp4"),
                             "--factor", "2", "--s3-endpoint", "http://127.0.0.1:9"],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("slomo: error: s3://b/in.mp4: storage not reachable: ") and expect in lines[0]


@pytest.mark.parametrize("how", ["--s3-endpoint", "--storage-option"])
def test_local_run_reads_and_writes_s3_with_the_storage_options(tmp_path: Path, s3_bucket, s3_server, how: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--local takes the same storage options as the flow path: the endpoint given, never the public AWS one."""
    from flows.cli import main

    bucket, options = s3_bucket
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(9, 64, 48), list(range(9)), Fraction(1, 25), audio=True)
    upload(src, f"{bucket}/in/a.mp4", options)
    where = (["--s3-endpoint", s3_server["endpoint"]] if how == "--s3-endpoint"
             else ["--storage-option", f'client_kwargs={{"endpoint_url": "{s3_server["endpoint"]}"}}'])
    argv = ["convert", f"{bucket}/in/a.mp4", f"{bucket}/out/a.mp4", "--factor", "2", "--mode", "fps",
            "--chunk-frames", "3", "--local", "-q", *where]
    assert main(argv) == 0, capsys.readouterr().err
    assert "9 -> 17 frames" in capsys.readouterr().out
    download(f"{bucket}/out/a.mp4", str(tmp_path / "result.mp4"), options)
    assert len(read_frame_timestamps(str(tmp_path / "result.mp4"))) == 17
    assert probe(str(tmp_path / "result.mp4")).audio is not None
    assert list_files(bucket, "**", options) == [f"{bucket}/in/a.mp4", f"{bucket}/out/a.mp4"]  # job state stayed local
    assert main(argv) == 1  # the remote output exists: refused in one line, as for a local one
    err = capsys.readouterr().err.strip()
    assert err == f"slomo: error: {bucket}/out/a.mp4: already exists (pass --overwrite to replace it)"


def test_local_run_with_an_unreachable_endpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.cli import main

    argv = ["convert", "s3://b/in.mp4", str(tmp_path / "o.mp4"), "--factor", "2", "--local", "-q",
            "--s3-endpoint", "http://127.0.0.1:9", "--storage-option", 'config_kwargs={"retries": {"max_attempts": 1}}']
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("slomo: error: s3://b/in.mp4: storage not reachable: ") and "\n" not in err, err
    assert "127.0.0.1:9" in err


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_s3_endpoint_stopping_mid_run_fails_in_one_line_and_the_rerun_resumes(tmp_path: Path) -> None:
    """A real S3 endpoint (its own moto server) goes away once a chunk is committed: the flow fails naming the
    chunks and the endpoint; the server back on the same port (moto keeps its objects), the run resumes."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server._server.server_port
    # one attempt per call, so a vanished endpoint fails in well under a second instead of after back-offs
    options = {"client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
               "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}
    try:
        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **options)
        fs.mkdir("gone")
        src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(9, 64, 48), list(range(9)), Fraction(1, 25))
        upload(src, "s3://gone/in.mp4", options)
        # a short lease: the run that met the outage could not release it, so the re-run waits it out
        settings = ConversionSettings(factor=2, mode="slowmo", chunk_frames=2, workers=1, lease_seconds=3)
        layout = settings.layout_for("s3://gone/in.mp4", "s3://gone/out.mp4", options)
        commits = layout.commits.removeprefix("s3://")

        def stop_after_first_commit() -> None:
            deadline = time.time() + 120
            while time.time() < deadline:
                if fs.exists(commits) and any(p.endswith(".json") for p in fs.ls(commits)):
                    break
                time.sleep(0.01)
            server.stop()

        watcher = threading.Thread(target=stop_after_first_commit, daemon=True)
        watcher.start()
        with pytest.raises(ChunksFailedError) as failure:
            convert_video("s3://gone/in.mp4", "s3://gone/out.mp4", settings, storage_options=options)
        watcher.join(timeout=10)
        message = str(failure.value)
        assert "\n" not in message and "storage not reachable: EndpointConnectionError" in message, message
        assert "s3://gone/" in message and f"127.0.0.1:{port}" in message
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        committed = [p for p in fs.ls(commits) if p.endswith(".json")]
        assert 1 <= len(committed) < 4 and not fs.exists("gone/out.mp4")
        time.sleep(settings.lease_seconds)
        summary = convert_video("s3://gone/in.mp4", "s3://gone/out.mp4", settings, storage_options=options)
        assert summary["chunks_resumed"] == len(committed) and summary["chunks"] == 4
        download("s3://gone/out.mp4", str(tmp_path / "result.mp4"), options)
        assert len(read_frame_timestamps(str(tmp_path / "result.mp4"))) == 17
    finally:
        server.stop()
