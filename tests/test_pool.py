"""The Ray actor pool on a real local Ray: order, load-once, retries, actor death, start failures.

Actors are other processes, so test workers keep cross-process state in files under a tmp dir:
one file per construction, one line per attempt, and O_EXCL marker files for "first attempt only".
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray

from tasks.pool import (
    ActorPool,
    ItemResult,
    PoolSettings,
    PoolStartError,
    ensure_ray,
    resolve_num_gpus,
    run_pool,
)

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray's worker processes cannot import this test module (pytest puts tests/ on the driver's sys.path
# only), so the test workers below travel by value instead of by reference.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


# -- test workers (module level so Ray can pickle them by reference) -------------------------------


def _first_time(marker: Path) -> bool:
    """True exactly once per marker across processes."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class RecordingWorker:
    """Squares numbers; items may ask to fail, fail once, die once, die always, or sleep."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.id = f"{socket.gethostname()}:{os.getpid()}"

    def process(self, item: dict[str, Any]) -> dict[str, Any]:
        key, action = item["key"], item.get("action", "ok")
        with open(self.state / f"attempts-{key}", "a") as f:
            f.write(self.id + "\n")
        if action == "fail":
            raise ValueError(f"cannot decode {key}\nsecond line of detail")
        if action == "fail_once" and _first_time(self.state / f"failed-{key}"):
            raise RuntimeError(f"transient error on {key}")
        if action == "die_once" and _first_time(self.state / f"died-{key}"):
            os._exit(1)
        if action == "die":
            os._exit(1)
        if action == "await_actors":  # a barrier: returns once that many actors have been built
            deadline = time.monotonic() + 30
            while len(list(self.state.glob("construct-*"))) < item["actors"]:
                if time.monotonic() > deadline:
                    raise TimeoutError("the other actors never started")
                time.sleep(0.05)
        started = time.time()
        if action == "sleep":
            time.sleep(item["seconds"])
        return {"key": key, "square": item["n"] ** 2, "worker": self.id, "start": started, "end": time.time()}


@dataclass(frozen=True)
class RecordingFactory:
    """Stands in for "load the model": records each construction as a file."""

    state: Path

    def __call__(self) -> RecordingWorker:
        (self.state / f"construct-{os.getpid()}-{time.monotonic_ns()}").touch()
        return RecordingWorker(self.state)


@dataclass(frozen=True)
class BrokenFactory:
    """Like loading corrupt weights: raises in every actor."""

    def __call__(self) -> RecordingWorker:
        raise ValueError("corrupt weights: bad magic number")


def _items(n: int, **special: str) -> list[tuple[str, dict[str, Any]]]:
    keys = [f"c{i:02d}" for i in range(n)]
    return [(k, {"key": k, "n": i, "action": special.get(k, "ok"), "actors": 2}) for i, k in enumerate(keys)]


def _constructions(state: Path) -> int:
    return len(list(state.glob("construct-*")))


def _attempt_workers(state: Path, key: str) -> list[str]:
    return (state / f"attempts-{key}").read_text().split()


# -- tests ----------------------------------------------------------------------------------------


def test_results_in_order_loaded_once_per_actor(ray_session: None, tmp_path: Path) -> None:
    seen: list[ItemResult] = []
    # the first item waits until both actors exist, so the run cannot finish on one actor alone
    items = _items(6, c00="await_actors")
    results = run_pool(items, RecordingFactory(tmp_path), PoolSettings(workers=2), on_result=seen.append)

    assert [r.key for r in results] == [k for k, _ in items]
    assert all(r.ok and r.error is None and r.attempts == 1 for r in results)
    assert [r.value["square"] for r in results] == [i * i for i in range(6)]
    assert all(r.worker == r.value["worker"] for r in results)
    # two actors, each built its worker exactly once, however many items it processed
    assert _constructions(tmp_path) == 2
    assert len({r.worker for r in results}) <= 2
    # on_result: once per item
    assert sorted(r.key for r in seen) == sorted(k for k, _ in items)


def test_retry_goes_to_another_actor(ray_session: None, tmp_path: Path) -> None:
    items = _items(4, c01="fail_once")
    results = run_pool(items, RecordingFactory(tmp_path), PoolSettings(workers=2))

    assert all(r.ok for r in results)
    flaky = results[1]
    assert flaky.attempts == 2
    first, second = _attempt_workers(tmp_path, "c01")
    assert first != second
    assert flaky.worker == second
    assert _constructions(tmp_path) == 2  # a raising item does not cost an actor


def test_retry_on_same_actor_when_alone(ray_session: None, tmp_path: Path) -> None:
    results = run_pool(_items(2, c00="fail_once"), RecordingFactory(tmp_path), PoolSettings(workers=1))

    assert [r.ok for r in results] == [True, True]
    assert results[0].attempts == 2
    assert len(set(_attempt_workers(tmp_path, "c00"))) == 1


def test_permanent_failure_is_reported_and_others_succeed(ray_session: None, tmp_path: Path) -> None:
    seen: list[ItemResult] = []
    items = _items(5, c02="fail")
    results = run_pool(items, RecordingFactory(tmp_path), PoolSettings(workers=2, max_attempts=3), seen.append)

    bad = results[2]
    assert not bad.ok and bad.value is None
    assert bad.attempts == 3
    assert bad.error is not None and "\n" not in bad.error
    assert bad.error.startswith("ValueError: cannot decode c02")
    assert "second line of detail" in bad.error
    assert "Traceback" not in bad.error and "ray::" not in bad.error
    assert len(_attempt_workers(tmp_path, "c02")) == 3
    assert all(r.ok and r.attempts == 1 for i, r in enumerate(results) if i != 2)
    assert sorted(r.key for r in seen) == sorted(k for k, _ in items)


def test_actor_death_mid_item_is_replaced_and_retried(ray_session: None, tmp_path: Path) -> None:
    results = run_pool(_items(3, c00="die_once"), RecordingFactory(tmp_path), PoolSettings(workers=1))

    assert all(r.ok for r in results)
    assert results[0].attempts == 2
    first, second = _attempt_workers(tmp_path, "c00")
    assert first != second  # the dead actor's process is gone; a fresh one finished the item
    assert results[0].worker == second
    assert all(r.attempts == 1 and r.worker == second for r in results[1:])
    assert _constructions(tmp_path) == 2  # the actor plus its replacement


def test_item_that_always_kills_its_actor_fails_alone(ray_session: None, tmp_path: Path) -> None:
    results = run_pool(_items(3, c00="die"), RecordingFactory(tmp_path), PoolSettings(workers=2, max_attempts=2))

    assert not results[0].ok and results[0].attempts == 2
    assert results[0].error is not None and results[0].error.startswith("ActorDiedError")
    assert "\n" not in results[0].error
    assert all(r.ok and r.attempts == 1 for r in results[1:])  # the other actor's items are untouched


def test_factory_failure_raises_quickly(ray_session: None) -> None:
    started = time.monotonic()
    with pytest.raises(PoolStartError, match="corrupt weights: bad magic number"):
        run_pool(_items(4), BrokenFactory(), PoolSettings(workers=2))
    assert time.monotonic() - started < 20


def test_unschedulable_actors_time_out(ray_session: None, tmp_path: Path) -> None:
    settings = PoolSettings(workers=1, num_cpus_per_worker=64, start_timeout_s=1)
    with pytest.raises(PoolStartError, match="no actor started"):
        run_pool(_items(1), RecordingFactory(tmp_path), settings)


def test_two_workers_run_in_parallel(ray_session: None, tmp_path: Path) -> None:
    """Sanity check only. Wall time includes actor start-up (~0.4 s for one actor on a pre-started
    Ray worker process, ~1.3 s for two fresh ones on this 2-core box), which eats most of the 2 s
    that a second actor saves on 4 x 1 s; so the assertion is on the processing span measured by the
    workers (first item start to last item end), and wall times are only logged."""
    items = [(f"s{i}", {"key": f"s{i}", "n": i, "action": "sleep", "seconds": 1.0}) for i in range(4)]
    walls, spans = {}, {}
    for workers in (1, 2):
        started = time.monotonic()
        results = run_pool(items, RecordingFactory(tmp_path), PoolSettings(workers=workers))
        walls[workers] = time.monotonic() - started
        assert all(r.ok for r in results)
        assert len({r.worker for r in results}) == workers
        spans[workers] = max(r.value["end"] for r in results) - min(r.value["start"] for r in results)
    logging.getLogger(__name__).info(
        "4 x 1 s items: wall 1 worker %.2f s, 2 workers %.2f s; processing span %.2f s vs %.2f s",
        walls[1], walls[2], spans[1], spans[2],
    )
    assert spans[2] < 0.8 * spans[1]


def test_small_cases(ray_session: None, tmp_path: Path) -> None:
    ensure_ray()  # already initialised: a no-op, must not raise or restart
    assert ray.is_initialized()
    assert resolve_num_gpus(PoolSettings()) == 0  # CPU-only cluster
    assert resolve_num_gpus(PoolSettings(num_gpus_per_worker=0.5)) == 0.5
    assert run_pool([], RecordingFactory(tmp_path), PoolSettings()) == []
    with pytest.raises(ValueError, match="unique"):
        run_pool([("a", {}), ("a", {})], RecordingFactory(tmp_path), PoolSettings())
    with pytest.raises(ValueError):
        PoolSettings(workers=0)


_LISTENERS = """
import json, os
from tasks.conversion import connect_ray
connect_ray(None)  # what a slomo run without --ray-address starts
import psutil, ray  # psutil: the copy Ray ships and puts on sys.path

@ray.remote
class Probe:
    def pid(self):
        return os.getpid()

ray.get(Probe.remote().pid.remote())  # a worker process too, not only the services
me = psutil.Process()
found = []
for proc in [me, *me.children(recursive=True)]:
    try:
        found += [[c.laddr.ip, c.laddr.port, proc.name()] for c in proc.net_connections(kind="inet")
                  if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        pass
print(json.dumps(found))
ray.shutdown()
"""


def test_local_ray_listens_on_loopback_only(tmp_path: Path) -> None:
    """Every TCP port that slomo's local Ray (services, agents, a worker, the driver) listens on is loopback."""
    import json
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "RAY_AUTH_MODE": "disabled"}
    result = subprocess.run([sys.executable, "-c", _LISTENERS], capture_output=True, text=True, timeout=180, check=False,
                            env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    listening = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(listening) >= 4, listening  # gcs, raylet, agents, workers: the check saw them
    wide = [entry for entry in listening if entry[0] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert wide == [], wide


def _gone(pid: int, timeout_s: float = 20.0) -> bool:
    """Whether process ``pid`` ends within ``timeout_s`` (Ray kills actors asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_actor_pool_keeps_its_actors_across_runs_until_closed(ray_session: None, tmp_path: Path) -> None:
    """A batch's groups run on the same actors (the worker is built once per actor per batch); closing ends them."""
    with ActorPool(RecordingFactory(tmp_path), PoolSettings(workers=2)) as actors:
        first = actors.run(_items(4, c00="await_actors"))  # both actors work in the first run
        second = actors.run([(f"d{i}", {"key": f"d{i}", "n": i}) for i in range(4)])
        assert actors.run([]) == []
    assert [r.value["square"] for r in first + second] == [0, 1, 4, 9] * 2
    first_workers, second_workers = {r.worker for r in first}, {r.worker for r in second}
    assert len(first_workers) == 2 and second_workers <= first_workers
    assert _constructions(tmp_path) == 2
    assert all(_gone(int(worker.rsplit(":", 1)[1])) for worker in first_workers)


def test_actor_pool_run_that_raises_leaves_no_actor_for_the_next(ray_session: None, tmp_path: Path) -> None:
    """An interrupted run kills its actors as run_pool does; the next run starts fresh ones."""

    def interrupt(result: ItemResult) -> None:
        raise KeyboardInterrupt

    with ActorPool(RecordingFactory(tmp_path), PoolSettings(workers=1)) as actors:
        with pytest.raises(KeyboardInterrupt):
            actors.run(_items(2), on_result=interrupt)
        (interrupted,) = {line for key in ("c00", "c01") if (tmp_path / f"attempts-{key}").exists()
                          for line in _attempt_workers(tmp_path, key)}
        assert _gone(int(interrupted.rsplit(":", 1)[1]))
        (after,) = actors.run(_items(1))
    assert after.ok and after.worker != interrupted
