"""Ctrl-C and SIGTERM on the default path: a real flow run in its own process, stopped as a terminal or a scheduler would.

Each case starts `slomo convert` (Prefect's ephemeral API, a private local Ray, two actors) in a fresh process group,
signals it once the first chunk is committed, then checks what a user would: exit 130 within 10 s, one line, no
traceback, the run marked in Prefect's database, nothing of it left in the temp dir or the process table, and a re-run
that resumes the committed chunks and finishes.

Slow (about 100 s here): two fresh processes each start Prefect's server and Ray before any chunk runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from clips import make_clip, moving_square_frames

ROOT = Path(__file__).resolve().parents[1]
FRAMES, CHUNK_FRAMES = 120, 5  # 24 chunks: the signal lands mid-run even on a fast machine


@pytest.fixture
def scratch() -> Iterator[Path]:
    """The run's own temp dir, short: Ray puts its session folder there, and its socket paths must fit 107 bytes."""
    folder = tempfile.mkdtemp(prefix="sint-")
    yield Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _environment(tmp_path: Path, scratch: Path) -> dict[str, str]:
    """A private Prefect home and temp dir (Ray's session folder lives there too), no configured API or cluster."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "RAY_ADDRESS")}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(tmp_path / "prefect"), TMPDIR=str(scratch),
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")  # two busy CPUs: the server may start slowly
    return env


def _commits(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / ".slomo-work").glob("*/commits/*.json"))


def _live_processes(pgid: int, marker: str) -> list[str]:
    """Processes still running (zombies aside) in the run's process group, or whose command line names ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, group = stat[0], int(stat[2])
        if state != "Z" and (group == pgid or marker in cmdline):
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def _flow_run_states(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{tmp_path / 'prefect' / 'prefect.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT state_type, state_name FROM flow_run").fetchall()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT to the group", "SIGTERM to the driver"])
def test_a_signal_stops_the_flow_run_in_order_and_a_rerun_resumes(tmp_path: Path, scratch: Path, how: str) -> None:
    clip = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(FRAMES, 64, 48), list(range(FRAMES)), Fraction(1, 25))
    env = _environment(tmp_path, scratch)
    command = [sys.executable, "-m", "flows.cli", "convert", clip, str(tmp_path / "out.mkv"), "--factor", "2",
               "--workers", "2", "--chunk-frames", str(CHUNK_FRAMES), "-q"]
    with open(tmp_path / "stderr.txt", "w") as err:
        run = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err, process_group=0)
        try:
            deadline = time.monotonic() + 300
            while not _commits(tmp_path) and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert run.poll() is None and _commits(tmp_path), (tmp_path / "stderr.txt").read_text()[-2000:]
            signalled = time.monotonic()
            if how == "SIGINT to the group":
                os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            else:
                os.kill(run.pid, signal.SIGTERM)
            code = run.wait(timeout=60)
            took = time.monotonic() - signalled
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    stderr = (tmp_path / "stderr.txt").read_text().strip()
    assert code == 130, stderr[-2000:]
    assert took < 10, f"{took:.1f} s"
    assert stderr == "slomo: interrupted; committed chunks kept, re-run the same command to resume", stderr[-2000:]
    assert not (tmp_path / "out.mkv").exists()
    assert [name for name in os.listdir(scratch) if "slomo-" in name] == []
    assert _live_processes(run.pid, str(scratch)) == []
    assert _flow_run_states(tmp_path) == [("CRASHED", "Crashed")]  # Prefect: "aborted by an interrupt signal"
    kept = len(_commits(tmp_path))
    assert 0 < kept < FRAMES // CHUNK_FRAMES

    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{FRAMES} -> {2 * FRAMES - 1} frames in {FRAMES // CHUNK_FRAMES} chunk(s)" in again.stdout
    assert f"(resumed {kept})" in again.stdout, again.stdout
    assert [name for name in os.listdir(scratch) if "slomo-" in name] == []
