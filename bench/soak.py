"""Soak: many tiny videos through the real `convert-archive` flow, and what the processes hold before and after.

An archive of tiny clips (a few frames each, every third with audio) goes through the product's flow on a
local Ray with 2 actors and Prefect's ephemeral API, in several groups (``--videos-per-pool``). A warm-up
video runs first, so "start" is measured with Ray, the API and the imports already up; anything that then
grows with the number of videos shows as end minus start. Actors are watched from outside, by pid, through
/proc (the pids they report in their commit markers must be the ones seen): peak RSS (VmHWM), RSS, open
files and threads. Temp entries count only folders named after this run's processes (other slomo runs
on the machine are not ours to count).

    python -m bench.soak                        # 50 clips, 2 actors, groups of 8
    python -m bench.soak --videos 200 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

ACTOR_TITLE = "ray::_PoolActor"  # the process title Ray gives the pool's actors (tasks/pool.py)
CLIP_FRAMES, CLIP_SIZE, CLIP_GOP = 9, (48, 32), 4  # tiny: the soak is about what piles up, not about pixels


# ------------------------------------------------------------------------------------------ the archive
def make_archive(folder: Path, videos: int, seed: int = 0) -> list[Path]:
    """``videos`` tiny clips in three dated folders, every third with a stereo AAC track."""
    from tests.clips import cfr_pts, make_clip, moving_square_frames

    paths = []
    for n in range(videos):
        path = folder / f"day{n % 3}" / f"clip-{n:03d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_clip(str(path), moving_square_frames(CLIP_FRAMES, *CLIP_SIZE, dx=1 + n % 3, seed=seed + n),
                  cfr_pts(CLIP_FRAMES), Fraction(1, 25), audio=n % 3 == 0, gop_size=CLIP_GOP)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------ process readings
@dataclass(frozen=True)
class ProcessReading:
    """What one process holds now, from /proc (Linux): RSS, peak RSS (VmHWM), open files, threads."""

    rss_mb: float
    peak_rss_mb: float
    fds: int
    threads: int


def read_process(pid: int) -> ProcessReading | None:
    """None when the process is gone (or not readable)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            status = dict(line.split(":", 1) for line in handle if ":" in line)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None

    def mb(key: str) -> float:
        return int(status.get(key, "0 kB").split()[0]) / 1024

    return ProcessReading(round(mb("VmRSS"), 1), round(mb("VmHWM"), 1), fds, int(status.get("Threads", "0")))


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return parents


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (a local Ray's raylet and workers are below the driver that started it)."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def actor_pids() -> list[int]:
    """This process's pool actors now (Ray kills actors asynchronously: a killed one may linger a moment)."""
    return [pid for pid in descendants(os.getpid()) if _title(pid).startswith(ACTOR_TITLE)]


def wait_for_no_actors(timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while actor_pids() and time.monotonic() < deadline:
        time.sleep(0.2)


@dataclass
class ActorTrace:
    """One actor process over the run: its first and last readings and the highest peak RSS seen."""

    pid: int
    first: ProcessReading
    last: ProcessReading
    peak_rss_mb: float


class ActorWatcher:
    """Samples this process's pool actors every ``interval`` s from a thread, until stopped."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.traces: dict[int, ActorTrace] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-actor-watcher", daemon=True)

    def __enter__(self) -> ActorWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        for pid in actor_pids():
            reading = read_process(pid)
            if reading is None:
                continue
            trace = self.traces.get(pid)
            if trace is None:
                self.traces[pid] = ActorTrace(pid, reading, reading, reading.peak_rss_mb)
            else:
                trace.last = reading
                trace.peak_rss_mb = max(trace.peak_rss_mb, reading.peak_rss_mb)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


# --------------------------------------------------------------------------------------- driver state
_SCRATCH_NAME = re.compile(r"^\.?slomo-[a-z-]+-(\d+)-")
_PLASMA = re.compile(r"Plasma memory usage (\d+) MiB, (\d+) objects")


def slomo_temp_entries(pids: set[int]) -> list[str]:
    """Scratch folders in the temp dir named after one of ``pids`` (scratch names carry their owner's pid)."""
    names = []
    for name in os.listdir(tempfile.gettempdir()):
        match = _SCRATCH_NAME.match(name)
        if match and int(match.group(1)) in pids:
            names.append(name)
    return sorted(names)


def object_store() -> tuple[int, int]:
    """(MiB, objects) in Ray's object store across nodes."""
    import ray
    from ray._private.internal_api import memory_summary

    # this driver's Ray by address: other Rays may run on the machine
    match = _PLASMA.search(memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True))
    return (int(match.group(1)), int(match.group(2))) if match else (-1, -1)


def driver_object_refs() -> int:
    """Object references this driver holds (refs kept by mistake would grow with the chunks)."""
    import ray

    return len(ray._private.worker.global_worker.core_worker.get_all_reference_counts())


@dataclass(frozen=True)
class DriverState:
    process: ProcessReading
    python_threads: int
    object_store_mb: int
    object_store_objects: int
    object_refs: int


def driver_state() -> DriverState:
    gc.collect()  # what is still referenced, not what the collector has not reached yet
    mib, objects = object_store()
    return DriverState(read_process(os.getpid()), threading.active_count(), mib, objects, driver_object_refs())


# ------------------------------------------------------------------------------------------- the run
@dataclass
class SoakResult:
    videos: int
    workers: int
    videos_per_pool: int
    wall_s: float
    converted: int
    outputs_present: int
    start: DriverState
    end: DriverState
    actors: list[ActorTrace]
    chunks_per_actor: dict[int, int]  # pid reported in the commit markers -> chunks it committed
    temp_before: list[str]
    temp_after: list[str]
    failures: list[str] = field(default_factory=list)

    @property
    def videos_per_minute(self) -> float:
        return 60.0 * self.converted / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "videos_per_minute": round(self.videos_per_minute, 2)}


def chunks_per_actor(output_root: Path) -> dict[int, int]:
    """From every commit marker under the outputs (job state sits beside each output's folder): the pid of
    the actor that committed it (``worker`` is ``host:pid``)."""
    counts: dict[int, int] = {}
    for marker in output_root.glob("**/.slomo-work/*/commits/*.json"):
        pid = int(json.loads(marker.read_text())["worker"].rsplit(":", 1)[1])
        counts[pid] = counts.get(pid, 0) + 1
    return counts


def run_soak(videos: int, out: Path, workers: int = 2, videos_per_pool: int = 8, chunk_frames: int = 4) -> SoakResult:
    """Warm up on one clip, then convert ``videos`` clips under ``out`` with the convert-archive flow.

    Starts a local Ray unless this process already has one (the tests' session Ray).
    """
    from flows.archive import BatchFailedError, convert_archive
    from slomo_core.settings import ConversionSettings
    from tasks.conversion import connect_ray

    make_archive(out / "warmup", 1, seed=10_000)
    make_archive(out / "archive", videos)
    settings = ConversionSettings(factor=2, audio="stretch", chunk_frames=chunk_frames, workers=workers)
    temp_before = slomo_temp_entries({os.getpid()})
    connect_ray(None)
    with ActorWatcher() as warm:
        convert_archive(str(out / "warmup"), str(out / "warmup-out"), settings)  # Prefect API, imports, first actors
    wait_for_no_actors()  # the warm-up's actors are not the soak's
    start = driver_state()
    failures: list[str] = []
    with ActorWatcher() as watcher:
        started = time.perf_counter()
        try:
            rows = convert_archive(str(out / "archive"), str(out / "slow"), settings, videos_per_pool=videos_per_pool)
        except BatchFailedError as exc:  # the table still says how far it got
            rows, failures = [], [str(exc)]
        wall = time.perf_counter() - started
    end = driver_state()
    actor_pids = set(watcher.traces) | set(warm.traces)
    outputs = sum((out / "slow" / p.relative_to(out / "archive")).is_file() for p in (out / "archive").rglob("*.mp4"))
    return SoakResult(
        videos=videos, workers=workers, videos_per_pool=videos_per_pool, wall_s=round(wall, 2),
        converted=sum(r["status"] == "converted" for r in rows), outputs_present=outputs, start=start, end=end,
        actors=sorted(watcher.traces.values(), key=lambda t: t.pid),
        chunks_per_actor=chunks_per_actor(out / "slow"),
        temp_before=temp_before, temp_after=slomo_temp_entries({os.getpid()} | actor_pids), failures=failures,
    )


# ------------------------------------------------------------------------------------------- the table
def table(result: SoakResult) -> str:
    start, end = result.start, result.end
    lines = [
        f"# soak: {result.videos} tiny videos ({CLIP_SIZE[0]}x{CLIP_SIZE[1]}, {CLIP_FRAMES} frames, every third with audio), "
        f"convert-archive flow, {result.workers} actors, groups of {result.videos_per_pool}, factor 2 + audio stretch",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| wall s | {result.wall_s:.1f} |",
        f"| videos converted / outputs present | {result.converted} / {result.outputs_present} |",
        f"| videos/min | {result.videos_per_minute:.1f} |",
        f"| actor processes seen / pids in commit markers | {len(result.actors)} / {len(result.chunks_per_actor)} |",
        "",
        "| driver | start | end |",
        "|---|---:|---:|",
        f"| RSS MB | {start.process.rss_mb:.0f} | {end.process.rss_mb:.0f} |",
        f"| open fds | {start.process.fds} | {end.process.fds} |",
        f"| threads (OS / Python) | {start.process.threads} / {start.python_threads} | {end.process.threads} / {end.python_threads} |",
        f"| Ray object store MiB / objects | {start.object_store_mb} / {start.object_store_objects} | "
        f"{end.object_store_mb} / {end.object_store_objects} |",
        f"| object refs held by the driver | {start.object_refs} | {end.object_refs} |",
        f"| slomo temp entries of this run's processes | {len(result.temp_before)} | {len(result.temp_after)} |",
        "",
        "| actor pid | chunks committed | peak RSS MB | RSS MB first / last | fds first / last | threads first / last |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for trace in result.actors:
        lines.append(f"| {trace.pid} | {result.chunks_per_actor.get(trace.pid, 0)} | {trace.peak_rss_mb:.0f} | "
                     f"{trace.first.rss_mb:.0f} / {trace.last.rss_mb:.0f} | {trace.first.fds} / {trace.last.fds} | "
                     f"{trace.first.threads} / {trace.last.threads} |")
    if result.failures:
        lines += ["", *(f"failed: {line}" for line in result.failures)]
    return "\n".join(lines)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=50, help="clips in the archive (default 50)")
    p.add_argument("--workers", type=int, default=2, help="Ray actors (default 2)")
    p.add_argument("--videos-per-pool", type=int, default=8, help="videos per group (default 8: several groups)")
    p.add_argument("--out", type=Path, help="keep the archive, outputs and job state here (default: a temp folder)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    args = p.parse_args(argv)
    if args.videos < 1 or args.workers < 1 or args.videos_per_pool < 1:
        p.error("--videos, --workers and --videos-per-pool must be >= 1")
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        p.error(f"--out {args.out}: give a new or empty folder (finished videos would be skipped, not converted)")
    return args


def quiet_environment() -> None:
    """As `slomo` runs: no telemetry, no log noise; a Prefect home of its own (an ephemeral API on a fresh
    database, not the user's)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    quiet_environment()
    with tempfile.TemporaryDirectory(prefix="soak-bench-") as tmp:
        os.environ.setdefault("PREFECT_HOME", str(Path(tmp) / "prefect"))
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        result = run_soak(args.videos, out.resolve(), args.workers, args.videos_per_pool)
    print(json.dumps(result.as_dict(), indent=2) if args.json else table(result))
    return 0 if not result.failures and result.outputs_present == args.videos else 1


if __name__ == "__main__":
    sys.exit(main())
