"""Overlapping runs of the same jobs: each output written once, every committed chunk rendered once.

Real processes (``python -m flows.cli``) converting the same video or archive at the same time, on local
files and on moto's S3, plus in-process runs meeting a live or an expired lease of another run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import s3fs
from fsspec.implementations.local import LocalFileSystem

from flows.cli import main
from slomo_core.chunk_attempt import run_chunk
from slomo_core.interp.dis import DISInterpolator
from slomo_core.lease import JobLease, LeaseHeldError, LeaseOwner
from slomo_core.manifest import write_manifest
from slomo_core.plan import plan_job
from slomo_core.settings import ConversionSettings
from slomo_core.storage import download, upload
from slomo_core.video.probe import read_frame_timestamps

from clips import make_clip, moving_square_frames

REPO = Path(__file__).resolve().parents[1]


def _cli(args: list[str], home: Path) -> subprocess.Popen:
    """``slomo ARGS`` in its own process, with its own Prefect home (each starts its own ephemeral API)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "PREFECT_HOME": str(home), "RAY_AUTH_MODE": "disabled",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}  # two servers starting at once on 2 cores
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(process: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _hold(url: str, options=None, ttl: float = 600.0, now_offset: float = 0.0) -> JobLease:
    """A lease held by another run (a live one, or with ``now_offset`` < -ttl one that expired long ago)."""
    lease = JobLease(url, ttl, options, LeaseOwner("other-host", 4242, "other-run"), subject="other",
                     clock=lambda: time.time() + now_offset)
    lease.acquire()
    return lease


# -- slomo convert --local: two processes, one video ---------------------------------------------------------------

def test_two_local_runs_of_one_video_convert_it_once(tmp_path: Path) -> None:
    # a few seconds of work, so that the run started second meets the first one's lease
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(24, 128, 96), list(range(24)), Fraction(1, 25))
    out = tmp_path / "out" / "slow.mp4"
    out.parent.mkdir()
    args = ["convert", src, str(out), "--factor", "4", "--chunk-frames", "6", "--local", "-q"]
    first, second = _cli(args, tmp_path / "p1"), _cli(args, tmp_path / "p2")
    results = [_finish(first, 300), _finish(second, 300)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    (_, written, _), (_, _, refused) = sorted(results, key=lambda r: r[0])
    assert "24 -> 93 frames" in written
    refusal = refused.strip()
    assert "\n" not in refusal and refusal.startswith(f"slomo: error: {out}: "), refusal
    # at the same time: refused by the lease; or the other run was already done: its output is not replaced
    assert "being converted by " in refusal or "already exists" in refusal, refusal
    assert len(read_frame_timestamps(str(out))) == 93
    assert sorted(p.name for p in out.parent.iterdir()) == ["slow.mp4"]  # no lease, lock or scratch left behind


def test_local_run_refuses_a_job_another_run_holds(tmp_path: Path, capsys) -> None:
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(5, 48, 32), list(range(5)), Fraction(1, 25))
    out = tmp_path / "o.mp4"
    settings = ConversionSettings(factor=2)
    other = _hold(settings.layout_for(src, str(out)).lease)
    assert main(["convert", src, str(out), "--factor", "2", "--local", "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"slomo: error: {out}: being converted by other-host pid 4242 (run other-run), lease until ")
    assert "\n" not in err and not out.exists()
    other.release()
    assert main(["convert", src, str(out), "--factor", "2", "--local", "-q"]) == 0  # free again: it runs
    assert len(read_frame_timestamps(str(out))) == 9 and not (tmp_path / ".slomo-work").exists()


# -- the flows, in this process: a live lease refuses, an expired one is taken over and the job resumes ------------

@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_convert_refuses_a_live_lease_and_takes_over_an_expired_one(tmp_path: Path, capsys) -> None:
    from flows.convert import convert_video

    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(7, 48, 32), list(range(7)), Fraction(1, 25))
    out = tmp_path / "o.mp4"
    settings = ConversionSettings(factor=2, chunk_frames=2)
    argv = ["convert", src, str(out), "--factor", "2", "--chunk-frames", "2", "-q"]
    layout = settings.layout_for(src, str(out))
    live = _hold(layout.lease)
    assert main(argv) == 1  # the CLI looks before starting Prefect and Ray
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"slomo: error: {out}: being converted by other-host pid 4242 (run other-run)"), err
    with pytest.raises(LeaseHeldError):  # the flow itself takes the lease (deployments start it without the CLI)
        convert_video(src, str(out), settings)
    live.release()
    # The other run was killed after committing chunk 0: its lease expired, its chunk stays.
    plan = plan_job(src, str(out), settings.work_root(str(out)), settings.job_settings(), settings.chunk_length,
                    cache_dir=str(tmp_path / "cache"))
    write_manifest(plan.layout.manifest, plan.chunks, plan.job)
    run_chunk(plan.chunks[0], DISInterpolator(), cache_dir=str(tmp_path / "cache"))
    _hold(layout.lease, ttl=60, now_offset=-3600)
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "7 -> 13 frames in 3 chunk(s)" in text and "(resumed 1)" in text, text
    work = Path(layout.work_uri)
    assert not (work / "LEASE.json").exists() and not (work / "LEASE.json.lock").exists()
    assert [len(list((work / "segments" / f"chunk-{n:05d}").iterdir())) for n in range(3)] == [1, 1, 1]
    assert len(read_frame_timestamps(str(out))) == 13


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_archive_skips_a_video_another_run_converts_and_runs_the_rest(tmp_path: Path, capsys) -> None:
    archive = tmp_path / "in"
    archive.mkdir()
    for n in range(2):
        make_clip(str(archive / f"v{n}.mp4"), moving_square_frames(4, 48, 32, seed=n), list(range(4)), Fraction(1, 25))
    settings = ConversionSettings(factor=2)
    busy = _hold(settings.layout_for(str(archive / "v1.mp4"), str(tmp_path / "out" / "v1.mp4")).lease)
    argv = ["archive", str(archive), str(tmp_path / "out"), "--factor", "2", "-q"]
    assert main(argv) == 0  # the other run has it in hand: not a failure
    text = capsys.readouterr().out
    assert f"{tmp_path / 'out'}: 1 converted, 0 already done, 1 being converted by another run" in text
    assert f"{archive / 'v1.mp4'}: skipped: being converted by other-host pid 4242 (run other-run), lease until " in text
    assert (tmp_path / "out" / "v0.mp4").exists() and not (tmp_path / "out" / "v1.mp4").exists()
    busy.release()
    assert main(argv) == 0
    assert "1 converted, 1 already done" in capsys.readouterr().out


# -- slomo archive: two processes, one archive (local files and moto's S3) -----------------------------------------

def _job_state(fs, work_root: str) -> dict[str, dict[str, int]]:
    """Per job folder: chunks planned, segments and status rows per chunk, DONE and LEASE present."""
    state = {}
    for job in sorted(p for p in fs.ls(work_root, detail=False)):
        files = [p[len(job) + 1:] for p in fs.find(job)]
        segments = [p.split("/")[1] for p in files if p.startswith("segments/")]
        statuses = [p.split("/")[1].rsplit("-", 2)[0] for p in files if p.startswith("status/")]
        commits = [p for p in files if p.startswith("commits/")]
        state[job.rsplit("/", 1)[-1]] = {
            "commits": len(commits),
            "most segments per chunk": max(segments.count(s) for s in segments),
            "most status rows per chunk": max(statuses.count(s) for s in statuses),
            "done": int("DONE.json" in files),
            "lease files": sum(p.startswith("LEASE.json") for p in files),
        }
    return state


@pytest.mark.slow  # two processes that each start a Prefect API and a local Ray: about a minute on 2 cores
@pytest.mark.parametrize("store", ["local", "s3"])
def test_two_archive_runs_at_once_convert_each_video_once(tmp_path: Path, store: str, request) -> None:
    names = [f"v{n}.mp4" for n in range(4)]
    for n, name in enumerate(names):
        make_clip(str(tmp_path / name), moving_square_frames(7, 48, 32, seed=n), list(range(7)), Fraction(1, 25))
    options = None
    if store == "s3":
        bucket, options = request.getfixturevalue("s3_bucket")
        for name in names:
            upload(str(tmp_path / name), f"{bucket}/archive/{name}", options)
        source, target = f"{bucket}/archive", f"{bucket}/slow"
        extra = ["--s3-endpoint", options["client_kwargs"]["endpoint_url"]]
        fs, root = s3fs.S3FileSystem(**options), f"{bucket[5:]}/slow"
    else:
        (tmp_path / "archive").mkdir()
        for name in names:
            (tmp_path / name).rename(tmp_path / "archive" / name)
        source, target, extra = str(tmp_path / "archive"), str(tmp_path / "slow"), []
        fs, root = LocalFileSystem(), str(tmp_path / "slow")
    args = ["archive", source, target, "--factor", "2", "--chunk-frames", "2", "--videos-per-pool", "2", "-q", *extra]
    runs = [_cli(args, tmp_path / f"prefect{n}") for n in range(2)]
    results = [_finish(run, 400) for run in runs]
    assert [code for code, _, _ in results] == [0, 0], results
    summaries = [out.splitlines()[0] for _, out, _ in results]
    converted = [int(line.split(": ", 1)[1].split(" converted")[0]) for line in summaries]
    assert sum(converted) == 4, summaries  # every video stitched by exactly one of the two runs
    assert any("being converted by another run" in line for line in summaries), summaries  # they did overlap
    state = _job_state(fs, f"{root}/.slomo-work")
    assert len(state) == 4
    for job, facts in state.items():  # 7 frames in chunks of 2 pairs: 3 chunks, each rendered once
        assert facts == {"commits": 3, "most segments per chunk": 1, "most status rows per chunk": 1, "done": 1,
                         "lease files": 0}, (job, facts)
    for name in names:
        local = tmp_path / f"check-{name}"
        download(f"{target}/{name}", str(local), options)
        assert len(read_frame_timestamps(str(local))) == 13
