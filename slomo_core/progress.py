"""Output frames done across a job's chunks, told through storage so any driver can show them.

Why storage and not a callback: the actors may run on a remote cluster, and the terminal bar and the
Prefect progress artifact run in the driver. Each chunk attempt rewrites one tiny JSON record
(``progress/chunk-N-<attempt>.json`` under the job's folder) as it renders: on its first frame, then at
most every REPORT_INTERVAL_S and every 1/REPORT_STEPS of its frames, whichever comes later, and on its last
frame; on object storage each rewrite is a PUT. The driver adds the planned frames of committed chunks to
the latest record of every chunk still running.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slomo_core.manifest import ChunkSpec
from slomo_core.plan import JobLayout
from slomo_core.storage import StorageOptions, filesystem, join, list_names, read_json, write_json

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 3.0  # at most one rewrite (an S3 PUT) per attempt this often: ~1,200 an hour, not 3,600
REPORT_STEPS = 100  # nor more than about this many per attempt: a slow chunk's bar moves by 1% steps
_RECORD = re.compile(r"chunk-(\d+)-(.+)\.json")
_COMMIT = re.compile(r"chunk-(\d+)\.json")


class ProgressReporter:
    """Called with the frames an attempt has written so far; rewrites its record for the first frame,
    then once both ``interval_s`` have passed and ``expected_frames / steps`` more frames are written (the
    later of the two), and always for the last frame. Progress is cosmetic: a failed write is logged,
    never raised."""

    def __init__(self, url: str, expected_frames: int, options: StorageOptions | None = None,
                 interval_s: float = REPORT_INTERVAL_S, clock: Callable[[], float] = time.monotonic,
                 steps: int = REPORT_STEPS) -> None:
        self.url, self.expected, self.options = url, expected_frames, options
        self.interval_s, self.clock = interval_s, clock
        self.min_frames = max(1, -(-expected_frames // steps))  # frames between two rewrites, at least
        self._last_write: float | None = None
        self._last_frames = 0

    def __call__(self, frames: int) -> None:
        now = self.clock()
        due = self._last_write is None or (now - self._last_write >= self.interval_s
                                           and frames - self._last_frames >= self.min_frames)
        if due or frames >= self.expected:
            self._last_write, self._last_frames = now, frames
            try:
                write_json(self.url, {"frames": frames, "expected": self.expected, "time": time.time()}, self.options)
            except Exception:
                log.debug("could not write progress record %s", self.url, exc_info=True)

    def discard(self) -> None:
        """A failed attempt's frames no longer count: its record goes (a retry writes its own)."""
        try:
            fs, path = filesystem(self.url, self.options)
            if fs.exists(path):
                fs.rm(path)
        except Exception:
            log.debug("could not remove progress record %s", self.url, exc_info=True)


@dataclass(frozen=True)
class JobProgress:
    """Output frames done and planned, over every chunk of one or more jobs."""

    done: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0

    def __add__(self, other: JobProgress) -> JobProgress:
        return JobProgress(self.done + other.done, self.total + other.total)


def job_progress(chunks: Sequence[ChunkSpec], options: StorageOptions | None = None) -> JobProgress:
    """Committed chunks count their planned frames; a running one its latest attempt's record. Two
    listings and one small read per running chunk, whatever the job's size."""
    if not chunks:
        return JobProgress(0, 0)
    layout = JobLayout(chunks[0].work_uri)
    committed = {int(m.group(1)) for m in map(_COMMIT.fullmatch, list_names(layout.commits, options)) if m}
    latest: dict[int, str] = {}
    for name in list_names(layout.progress, options):  # attempt ids start with their start time: last is latest
        match = _RECORD.fullmatch(name)
        if match and int(match.group(1)) not in committed:
            latest[int(match.group(1))] = name
    expected = {c.chunk_index: c.expected_frames for c in chunks}
    done = sum(frames for index, frames in expected.items() if index in committed)
    for index, name in latest.items():
        try:
            done += min(int(read_json(join(layout.progress, name), options)["frames"]), expected.get(index, 0))
        except Exception:  # being replaced, or just removed by a failed attempt: counted next time
            log.debug("could not read progress record %s", name, exc_info=True)
    return JobProgress(done, sum(expected.values()))


def rate_line(progress: JobProgress, frames_now: int, seconds: float) -> str:
    """"120/525 frames (23%), 40.1 frames/s, ETA 0:10": what the Prefect artifact says. ``frames_now`` is
    the frames done in this run (resumed chunks do not make it look faster)."""
    rate = frames_now / seconds if seconds > 0 else 0.0
    text = f"{progress.done}/{progress.total} output frames ({progress.percent:.0f}%)"
    if rate > 0:
        remaining = max(0, progress.total - progress.done) / rate
        text += f", {rate:.1f} frames/s, ETA {int(remaining // 60)}:{int(remaining % 60):02d}"
    return text
