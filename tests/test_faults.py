"""Fault injection on real runs (Prefect harness + Ray actors, and --local): nothing committed is lost, and
what cannot be done is named chunk by chunk. The faults are real: a killed actor process, a storage path
that refuses a write, a source whose bytes are corrupt, a store that fills up or whose endpoint goes away
(``faulty://``, a real fsspec protocol over local files: tests/faulty_fs.py)."""

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

from flows.cli import main
from flows.convert import convert_video
from slomo_core.errors import StorageError
from slomo_core.plan import JobLayout
from slomo_core.settings import ConversionSettings
from slomo_core.video.probe import read_frame_timestamps
from tasks.conversion import ChunksFailedError

from clips import make_clip, moving_square_frames
from faulty_fs import register, set_faults

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


# ---- storage faults: a full disk and a storage endpoint that goes away, on faulty:// ----

def _faulty(tmp_path: Path) -> tuple[dict, str]:
    """Storage options naming a fresh, fault-free budget file, and the faulty:// URL of ``tmp_path``."""
    register()  # this process; actors get it from the Ray session's setup hook (conftest.py)
    faults = str(tmp_path / "faults.json")
    set_faults(faults)
    return {"faults": faults}, f"faulty://{tmp_path}"


def _leftovers(folder: Path) -> list[str]:
    """Temporary names a failed write left (the real names hold complete objects or nothing). In a work dir
    whose endpoint went away some may stay (nothing can remove them then): no reader takes them for real."""
    return sorted(str(p) for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith("output."))


def _arm_after_first_commit(layout: JobLayout, faults: str, **fault: int) -> threading.Thread:
    """Once a chunk is committed, the store fills up or goes away (the rest of the run meets the fault)."""
    commits = Path(layout.work_uri.removeprefix("faulty://")) / "commits"

    def arm() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not (commits.exists() and any(commits.glob("*.json"))):
            time.sleep(0.002)
        set_faults(faults, **fault)

    watcher = threading.Thread(target=arm, daemon=True)
    watcher.start()
    return watcher


@pytest.mark.parametrize("fault,expect", [
    ({"space": 0}, "uploading failed: no space left on device (ENOSPC)"),
    ({"calls": 0}, "storage not reachable: ConnectionRefusedError"),
])
def test_store_full_or_gone_mid_run_fails_the_chunks_by_name_and_the_rerun_resumes(
        tmp_path: Path, fault: dict, expect: str) -> None:
    """Work dir and output on the faulty store, one actor: chunk 0 commits, then the disk is full (or the
    endpoint is gone). The run fails naming the chunks and the store's URLs; nothing partial is left under a
    real name; with the fault gone the same run resumes from chunk 0's commit."""
    options, store = _faulty(tmp_path)
    src, out = _clip(tmp_path), f"{store}/out/out.mp4"
    # a short lease: a run that lost its endpoint cannot release it, so the re-run waits it out
    settings = ConversionSettings(workers=1, work_dir=f"{store}/work", lease_seconds=3, **PARAMS)
    layout = settings.layout_for(src, out, options)
    watcher = _arm_after_first_commit(layout, options["faults"], **fault)
    with pytest.raises(ChunksFailedError) as failure:
        convert_video(src, out, settings, storage_options=options)
    watcher.join(timeout=5)
    message = str(failure.value)
    assert "\n" not in message and expect in message, message
    assert f"{store}/" in message  # the user's store, not a scratch folder
    work = Path(layout.work_uri.removeprefix("faulty://"))
    committed = sorted(p.name for p in (work / "commits").glob("*.json"))
    assert "chunk-00000.json" in committed and len(committed) < 4
    assert not (tmp_path / "out" / "out.mp4").exists() and _leftovers(tmp_path / "out") == []
    if "space" in fault:  # a full store still removes what a failed write left
        assert _leftovers(tmp_path) == []
    set_faults(options["faults"])  # disk emptied, endpoint back
    if Path(layout.lease.removeprefix("faulty://")).exists():
        time.sleep(settings.lease_seconds)
    summary = convert_video(src, out, settings, storage_options=options)
    assert summary["chunks_resumed"] == len(committed) and summary["chunks"] == 4
    assert len(read_frame_timestamps(str(tmp_path / "out" / "out.mp4"))) == 17
    assert _leftovers(tmp_path / "out") == []


def test_full_disk_at_stitch_leaves_no_output_and_the_rerun_stitches(tmp_path: Path) -> None:
    """Every chunk committed (local work dir), then the output's store is full: the stitch fails in one line
    naming the output, the output is absent, and the re-run only stitches."""
    options, store = _faulty(tmp_path)
    src, out = _clip(tmp_path), f"{store}/out/out.mp4"
    settings = ConversionSettings(workers=2, work_dir=str(tmp_path / "work"), **PARAMS)
    layout = settings.layout_for(src, out, options)
    commits = Path(layout.commits)

    def fill_disk_when_all_committed() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not (commits.exists() and len(list(commits.glob("*.json"))) == 4):
            time.sleep(0.002)
        set_faults(options["faults"], space=0)

    watcher = threading.Thread(target=fill_disk_when_all_committed, daemon=True)
    watcher.start()
    with pytest.raises(StorageError) as failure:
        convert_video(src, out, settings, storage_options=options)
    watcher.join(timeout=5)
    assert str(failure.value) == f"{out}: uploading failed: no space left on device (ENOSPC)"
    assert not (tmp_path / "out" / "out.mp4").exists() and _leftovers(tmp_path) == []
    assert not Path(layout.done).exists()
    set_faults(options["faults"])
    summary = convert_video(src, out, settings, storage_options=options)
    assert summary["chunks_resumed"] == 4
    assert len(read_frame_timestamps(str(tmp_path / "out" / "out.mp4"))) == 17


@pytest.mark.parametrize("where,fault,expect", [
    ("source", {"scratch": 0}, "in.mp4: copying to {tmp}"),  # the copy made for decoding fills the scratch disk
    # the first write to a full output store is the job's lease beside the output
    ("output", {"space": 0}, "out/.slomo-work/: taking the job's lease failed: no space left on device (ENOSPC)"),
    ("source", {"calls": 2}, "in.mp4: storage not reachable: ConnectionRefusedError"),  # gone after planning
])
def test_local_run_meets_storage_faults_in_one_line_and_reruns_clean(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, fault: dict, expect: str) -> None:
    options, store = _faulty(tmp_path)
    (tmp_path / "out").mkdir()
    src = _clip(tmp_path)
    source = f"{store}/in.mp4" if where == "source" else src
    output = f"{store}/out/o.mp4" if where == "output" else str(tmp_path / "out" / "o.mp4")
    expect = expect.replace("out.mp4", "out/o.mp4")
    set_faults(options["faults"], **fault)
    argv = ["convert", source, output, "--factor", "2", "--chunk-frames", "2", "--local", "-q",
            "--storage-option", f"faults={options['faults']}"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("slomo: error: ") and "\n" not in err and "Traceback" not in err, err
    assert (source if where == "source" else os.path.dirname(output) + "/").removeprefix("faulty://") in err
    if "{tmp}" in expect:
        assert "copying to " in err and "failed: no space left on device (ENOSPC)" in err, err
    else:
        assert expect.split(": ", 1)[1] in err, err
    # no file left (a local-backed test store may keep the lease's empty folders; object stores have none)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == [] and _leftovers(tmp_path) == []
    set_faults(options["faults"])
    assert main(argv) == 0, capsys.readouterr().err
    assert len(read_frame_timestamps(str(tmp_path / "out" / "o.mp4"))) == 17


def test_done_marker_that_cannot_be_written_takes_the_output_back(tmp_path: Path) -> None:
    """An output without its DONE marker would block the re-run ("already exists"): the stitch removes it."""
    from slomo_core.chunk_attempt import run_chunk
    from slomo_core.interp.dis import DISInterpolator
    from slomo_core.manifest import write_manifest
    from slomo_core.plan import ChunkLength, JobSettings, plan_job
    from slomo_core.stitch import stitch_job
    from slomo_core.timestamps import RateSpec

    options, store = _faulty(tmp_path)
    src, out = _clip(tmp_path), str(tmp_path / "out.mp4")
    plan = plan_job(src, out, f"{store}/work", JobSettings(RateSpec("slowmo", factor=2)), ChunkLength(frames=4),
                    cache_dir=str(tmp_path / "cache"), options=options)
    write_manifest(plan.layout.manifest, plan.chunks, plan.job, options)
    for chunk in plan.chunks:
        run_chunk(chunk, DISInterpolator(), cache_dir=str(tmp_path / "cache"), options=options)
    set_faults(options["faults"], space=0)  # the work dir's store is full: DONE.json cannot be written
    with pytest.raises(StorageError, match=r"DONE\.json: writing failed: no space left on device \(ENOSPC\)"):
        stitch_job(plan.chunks, cache_dir=str(tmp_path / "cache"), options=options)
    assert not os.path.exists(out) and _leftovers(tmp_path) == []
    set_faults(options["faults"])
    assert stitch_job(plan.chunks, cache_dir=str(tmp_path / "cache"), options=options).frames == 17
    assert len(read_frame_timestamps(out)) == 17
