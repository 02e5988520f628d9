"""Temporary files: gone after success, failure and Ctrl-C; caches bounded; a killed run's leftovers swept."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import pytest

from flows.cli import main
from slomo_core.interp.factory import ModelSpec
from slomo_core.scratch import (
    OWNER_FILE,
    is_stale,
    make_scratch_dir,
    prune_cache,
    scratch_dir,
    sweep_stale,
)
from tasks.chunk_workers import ChunkWorker

from clips import make_clip, moving_square_frames, truncate_file


@pytest.fixture
def fresh_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty temp dir for this process (tempfile caches its choice, so set both)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_scratch_dir_is_removed_on_success_failure_and_interrupt(fresh_tmp: Path) -> None:
    with scratch_dir("slomo-chunk-") as path:
        assert Path(path, OWNER_FILE).exists() and Path(path).parent == fresh_tmp
    for error in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)), scratch_dir("slomo-chunk-") as path:
            Path(path, "segment.mp4").write_bytes(b"x")
            raise error
    assert list(fresh_tmp.iterdir()) == []


def _leftover_of_a_killed_process(parent: Path, prefix: str = "slomo-chunk-") -> str:
    """A scratch folder made by a process that then died without cleaning up (like SIGKILL)."""
    code = ("import sys; from slomo_core.scratch import make_scratch_dir; "
            f"print(make_scratch_dir({prefix!r}, {str(parent)!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return result.stdout.strip()


def test_sweep_removes_only_what_is_provably_ours_and_stale(fresh_tmp: Path) -> None:
    dead = _leftover_of_a_killed_process(fresh_tmp)
    Path(dead, "segment.mp4").write_bytes(b"half a segment")
    live = make_scratch_dir("slomo-actor-cache-")  # this process: alive
    other_host = make_scratch_dir("slomo-chunk-")
    owner = json.loads(Path(other_host, OWNER_FILE).read_text())
    Path(other_host, OWNER_FILE).write_text(json.dumps({**owner, "host": "not-" + socket.gethostname()}))
    reused = make_scratch_dir("slomo-plan-")  # our pid, but recorded for an earlier process with that pid
    Path(reused, OWNER_FILE).write_text(json.dumps({**owner, "start": (owner["start"] or 0) - 1}))
    legacy = fresh_tmp / "slomo-actor-cache-abcd1234"  # no owner file: not provably ours
    legacy.mkdir()
    foreign = fresh_tmp / "slomo-chunk-99999999-x"  # looks like ours, no owner file
    foreign.mkdir()
    (fresh_tmp / "unrelated").mkdir()
    assert is_stale(dead) and not is_stale(live)
    assert sorted(sweep_stale()) == sorted([dead, reused])
    assert sorted(p.name for p in fresh_tmp.iterdir()) == sorted(
        [Path(live).name, Path(other_host).name, legacy.name, foreign.name, "unrelated"])


def test_cache_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    for n, name in enumerate(["old", "mid", "new"]):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "video.mp4").write_bytes(b"x" * 1000)
        os.utime(folder, (time.time() - 100 + n, time.time() - 100 + n))
    assert [Path(p).name for p in prune_cache(str(tmp_path), 2500)] == ["old"]
    assert [Path(p).name for p in prune_cache(str(tmp_path), 10)] == ["mid"]  # the newest always stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]


def test_chunk_worker_cache_lives_as_long_as_the_worker(fresh_tmp: Path) -> None:
    dead = _leftover_of_a_killed_process(fresh_tmp)
    worker = ChunkWorker(ModelSpec("dis"), None)
    assert not Path(dead).exists()  # a starting actor sweeps its node's leftovers
    assert Path(worker.cache_dir).parent == fresh_tmp and Path(worker.cache_dir).name.startswith("slomo-actor-cache-")
    worker.close()
    assert list(fresh_tmp.iterdir()) == []


def test_local_runs_leave_the_temp_dir_as_they_found_it(tmp_path: Path, fresh_tmp: Path, capsys) -> None:
    work = tmp_path / "work"
    work.mkdir()
    clip = make_clip(str(work / "in.mp4"), moving_square_frames(30, 48, 32), list(range(30)), Fraction(1, 25),
                     faststart=True)
    stale = _leftover_of_a_killed_process(work, ".slomo-convert-")  # a killed --local run's work folder
    Path(stale, "segment.mp4").write_bytes(b"half")
    assert main(["convert", clip, str(work / "out.mp4"), "--factor", "2", "--local", "-q"]) == 0
    cut = truncate_file(clip, str(work / "cut.mp4"), 0.6)
    assert main(["convert", cut, str(work / "fail.mp4"), "--factor", "2", "--local", "-q"]) == 1
    capsys.readouterr()
    assert list(fresh_tmp.iterdir()) == []
    assert sorted(p.name for p in work.iterdir()) == ["cut.mp4", "in.mp4", "out.mp4"], stale


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_distributed_run_leaves_the_temp_dirs_as_it_found_them(tmp_path: Path, fresh_tmp: Path, capsys) -> None:
    """The driver's temp dir is left as found; the actors (in the session's Ray, whose processes use the
    system temp dir) leave no scratch folder named after their pids."""
    clip = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(7, 48, 32), list(range(7)), Fraction(1, 25))
    out = tmp_path / "out.mp4"
    assert main(["convert", clip, str(out), "--factor", "2", "--chunk-frames", "3", "--workers", "2", "-q"]) == 0
    capsys.readouterr()
    assert list(fresh_tmp.iterdir()) == []
    markers = list((tmp_path / ".slomo-work").glob("*/commits/*.json"))
    pids = {json.loads(m.read_text())["worker"].rsplit(":", 1)[1] for m in markers}
    assert pids
    left = [p.name for p in Path("/tmp").glob("*slomo-*") if any(f"-{pid}-" in p.name for pid in pids)]
    assert left == []
