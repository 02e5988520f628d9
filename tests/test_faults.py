"""Fault injection on real runs (Prefect harness + Ray actors): nothing committed is lost, and what
cannot be done is named chunk by chunk. The faults are real: a killed actor process, a storage path that
refuses a write, a source whose bytes are corrupt."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from flows.convert import convert_video
from slomo_core.plan import JobLayout
from slomo_core.settings import ConversionSettings
from slomo_core.video.probe import read_frame_timestamps
from tasks.conversion import ChunksFailedError

from clips import make_clip, moving_square_frames

pytestmark = pytest.mark.usefixtures("ray_session", "prefect_harness")

PARAMS = {"factor": 2, "mode": "slowmo", "chunk_frames": 2}


def _layout(source: str, output: str, params: dict) -> JobLayout:
    return ConversionSettings(**params).layout_for(source, output)


def _clip(tmp_path: Path, n: int = 9, size: tuple[int, int] = (64, 48), **kwargs) -> str:
    return make_clip(str(tmp_path / "in.mp4"), moving_square_frames(n, *size), list(range(n)), Fraction(1, 25), **kwargs)


def _block_segment_folder(layout: JobLayout, chunk: int) -> Path:
    """A plain file where the chunk's segment folder must go: every upload of that chunk fails."""
    blocker = Path(layout.segment(chunk, "x")).parent
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    return blocker


def test_upload_failing_once_is_retried_on_another_actor(tmp_path: Path) -> None:
    src, out = _clip(tmp_path), str(tmp_path / "out.mp4")
    layout = _layout(src, out, PARAMS)
    blocker = _block_segment_folder(layout, 1)
    status_dir = Path(layout.work_uri) / "status"

    def unblock_after_first_failure() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not list(status_dir.glob("chunk-00001-*.parquet")):
            time.sleep(0.01)
        blocker.unlink()

    watcher = threading.Thread(target=unblock_after_first_failure, daemon=True)
    watcher.start()
    summary = convert_video(src, out, ConversionSettings(workers=2, **PARAMS))
    watcher.join(timeout=5)
    assert summary["retried_chunks"] == 1 and summary["output_frames"] == 17
    assert len(read_frame_timestamps(out)) == 17


def test_permanent_upload_failure_names_the_chunk_and_rerun_completes(tmp_path: Path) -> None:
    src, out = _clip(tmp_path), str(tmp_path / "out.mp4")
    layout = _layout(src, out, PARAMS)
    blocker = _block_segment_folder(layout, 2)
    with pytest.raises(ChunksFailedError, match=r"1 chunk\(s\) failed: chunk 2 \(frames 4-6\)"):
        convert_video(src, out, ConversionSettings(workers=2, **PARAMS))
    assert not os.path.exists(out)
    committed = sorted(p.name for p in (Path(layout.work_uri) / "commits").iterdir())
    assert committed == ["chunk-00000.json", "chunk-00001.json", "chunk-00003.json"]
    blocker.unlink()
    summary = convert_video(src, out, ConversionSettings(workers=2, **PARAMS))
    assert summary["chunks_resumed"] == 3 and summary["chunks"] == 4
    assert len(read_frame_timestamps(out)) == 17


def _actor_pids() -> list[int]:
    """Ray titles an actor's process after its class (``ray::_PoolActor...``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"_PoolActor" in cmdline and int(entry) != os.getpid():
            found.append(int(entry))
    return found


def test_actor_killed_mid_chunk_is_replaced(tmp_path: Path) -> None:
    # Bigger frames and factor 8 so each chunk takes a while: the kill lands while chunks remain.
    src, out = _clip(tmp_path, n=13, size=(320, 240)), str(tmp_path / "out.mp4")
    params = {"factor": 8, "mode": "slowmo", "chunk_frames": 1}
    layout = _layout(src, out, params)
    commits = Path(layout.work_uri) / "commits"
    killed: list[int] = []

    def kill_actors_after_first_commit() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not (commits.exists() and any(commits.iterdir())):
            time.sleep(0.02)
        time.sleep(0.3)  # both actors are inside a chunk again
        for pid in _actor_pids():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    watcher = threading.Thread(target=kill_actors_after_first_commit, daemon=True)
    watcher.start()
    summary = convert_video(src, out, ConversionSettings(workers=2, **params))
    watcher.join(timeout=5)
    assert killed, "no actor process found to kill"
    assert summary["retried_chunks"] >= 1
    assert len(read_frame_timestamps(out)) == 12 * 8 + 1
    worker_pids = {int(w.rsplit(":", 1)[1]) for w in summary["workers"]}
    assert worker_pids - set(killed), "replacement actors finished the retried chunks"


def _corrupt_packet(path: str, frame: int) -> None:
    """Overwrite the middle of one frame's bytes (PNG frames carry zlib streams: decoding fails loudly)."""
    with av.open(path) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        target = sorted(packets, key=lambda p: p.pts)[frame]
        pos, size = target.pos, target.size
    with open(path, "r+b") as handle:
        handle.seek(pos + size // 2)
        handle.write(bytes(range(256))[: min(64, size // 3)])


def test_corrupt_chunk_in_the_middle_is_reported_exactly(tmp_path: Path) -> None:
    src = make_clip(str(tmp_path / "in.mov"), moving_square_frames(9, 64, 48), list(range(9)), Fraction(1, 25),
                    codec="png", pix_fmt="rgb24")
    _corrupt_packet(src, 5)
    out = str(tmp_path / "out.mp4")
    layout = _layout(src, out, PARAMS)
    with pytest.raises(ChunksFailedError) as failure:
        convert_video(src, out, ConversionSettings(workers=2, **PARAMS))
    message = str(failure.value)
    assert "1 chunk(s) failed: chunk 2 (frames 4-6)" in message and "decode error at frame 5" in message
    committed = sorted(p.name for p in (Path(layout.work_uri) / "commits").iterdir())
    assert committed == ["chunk-00000.json", "chunk-00001.json", "chunk-00003.json"]
    assert not os.path.exists(out)
    shutil.rmtree(layout.work_uri)
