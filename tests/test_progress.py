"""Progress in output frames, told through storage: records chunk attempts write, and the job's sum of them."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import pytest

from slomo_core.chunk_attempt import run_chunk
from slomo_core.errors import InputError
from slomo_core.interp.dis import DISInterpolator
from slomo_core.manifest import write_manifest
from slomo_core.plan import ChunkLength, JobLayout, JobSettings, Plan, plan_job
from slomo_core.progress import JobProgress, ProgressReporter, job_progress, rate_line
from slomo_core.timestamps import RateSpec

from clips import make_clip, moving_square_frames


def _plan(tmp_path: Path, frames: int = 5, chunk_frames: int = 2) -> Plan:
    source = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(frames, 48, 32), list(range(frames)),
                       Fraction(1, 25))
    plan = plan_job(source, str(tmp_path / "out.mp4"), str(tmp_path / "work"), JobSettings(spec=RateSpec("slowmo", 3)),
                    ChunkLength(frames=chunk_frames), cache_dir=str(tmp_path / "cache"))
    write_manifest(plan.layout.manifest, plan.chunks, plan.job)
    return plan


def test_reporter_writes_first_and_last_frame_and_at_most_once_an_interval(tmp_path: Path) -> None:
    now = [0.0]
    url = str(tmp_path / "progress" / "chunk-00000-1-a.json")
    reporter = ProgressReporter(url, expected_frames=10, interval_s=1.0, clock=lambda: now[0])

    def written() -> int:
        return json.loads(Path(url).read_text())["frames"]

    reporter(1)
    assert written() == 1
    now[0] = 0.5
    reporter(4)
    assert written() == 1  # within the interval: no write
    now[0] = 1.0
    reporter(6)
    assert written() == 6
    now[0] = 1.1
    reporter(10)
    assert written() == 10  # the last frame always
    reporter.discard()
    assert not Path(url).exists()
    reporter.discard()  # nothing left to remove: still fine


def test_reporter_waits_for_the_later_of_the_interval_and_a_step_of_frames(tmp_path: Path) -> None:
    """Object storage gets a PUT per rewrite: at most one per interval, and no more than ``steps`` per attempt."""
    now = [0.0]
    url = str(tmp_path / "chunk-00000-1-a.json")
    reporter = ProgressReporter(url, expected_frames=1000, interval_s=3.0, clock=lambda: now[0], steps=100)

    def written() -> int:
        return json.loads(Path(url).read_text())["frames"]

    reporter(1)
    assert written() == 1  # the first frame: the chunk shows as running
    now[0] = 2.9
    reporter(500)
    assert written() == 1  # many frames, but within the interval
    now[0] = 3.0
    reporter(500)
    assert written() == 500
    now[0] = 60.0
    reporter(509)
    assert written() == 500  # long enough, but fewer than 1% of the frames since the last record
    reporter(510)
    assert written() == 510
    now[0] = 60.1
    reporter(1000)
    assert written() == 1000  # the last frame always


def test_a_tiny_chunk_writes_its_record_for_the_first_and_the_last_frame(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A real chunk on local storage: every frame is reported to the reporter, the record is rewritten only
    as the interval allows (here the whole chunk renders well within one)."""
    import time

    import slomo_core.progress

    plan = _plan(tmp_path, frames=9, chunk_frames=10)
    (chunk,) = plan.chunks
    writes: list[int] = []
    write_json = slomo_core.progress.write_json

    def counted(url: str, record: dict, options=None) -> None:
        writes.append(record["frames"])
        write_json(url, record, options)

    monkeypatch.setattr(slomo_core.progress, "write_json", counted)
    seen: list[int] = []
    started = time.monotonic()
    run_chunk(chunk, DISInterpolator(), cache_dir=str(tmp_path / "cache"), progress=seen.append)
    seconds = time.monotonic() - started
    assert seen == list(range(1, chunk.expected_frames + 1))
    assert writes[0] == 1 and writes[-1] == chunk.expected_frames
    assert len(writes) <= 2 + seconds / slomo_core.progress.REPORT_INTERVAL_S


def test_job_progress_adds_committed_chunks_and_the_latest_attempt_of_running_ones(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    first, second = plan.chunks[0], plan.chunks[1]
    assert job_progress(plan.chunks) == JobProgress(0, plan.job["output_frames"])
    run_chunk(first, DISInterpolator(), cache_dir=str(tmp_path / "cache"))
    assert job_progress(plan.chunks).done == first.expected_frames  # committed: its planned frames
    layout = JobLayout(second.work_uri)
    ProgressReporter(layout.progress_record(1, "1700000000-old"), second.expected_frames)(second.expected_frames - 1)
    ProgressReporter(layout.progress_record(1, "1700000100-new"), second.expected_frames)(2)
    assert job_progress(plan.chunks).done == first.expected_frames + 2  # the newest attempt, not the dead one
    for chunk in plan.chunks[1:]:
        run_chunk(chunk, DISInterpolator(), cache_dir=str(tmp_path / "cache"))
    finished = job_progress(plan.chunks)
    assert finished.done == finished.total == plan.job["output_frames"] and finished.percent == 100.0


def test_a_run_chunk_leaves_a_complete_record_and_a_failed_one_none(tmp_path: Path) -> None:
    plan = _plan(tmp_path, chunk_frames=10)
    (chunk,) = plan.chunks
    progress_dir = Path(JobLayout(chunk.work_uri).progress)
    wrong = dataclasses.replace(chunk, expected_frames=chunk.expected_frames + 1)  # fails after its last frame
    with pytest.raises(InputError, match="plan expects"):
        run_chunk(wrong, DISInterpolator(), cache_dir=str(tmp_path / "cache"))
    assert not progress_dir.exists() or not list(progress_dir.glob("*.json"))  # a failed attempt's frames go
    seen: list[int] = []
    run_chunk(chunk, DISInterpolator(), cache_dir=str(tmp_path / "cache"), progress=seen.append)
    (record,) = progress_dir.glob("*.json")
    assert json.loads(record.read_text())["frames"] == chunk.expected_frames == seen[-1]


def test_rate_line_says_frames_rate_and_eta() -> None:
    assert rate_line(JobProgress(100, 400), 100, 10.0) == "100/400 output frames (25%), 10.0 frames/s, ETA 0:30"
    assert rate_line(JobProgress(0, 400), 0, 0.0) == "0/400 output frames (0%)"
