"""A small fault-tolerant pool of Ray actors that each build their worker once and process items.

Why a pool of long-lived actors rather than one Ray task per chunk: the model is loaded once per
actor (``worker_factory`` runs in the actor's constructor) and reused for every chunk the actor
pulls. Only small picklable items (chunk descriptions) and values (status rows) travel through Ray;
workers read and write the heavy data themselves.

Fault handling is done here, not by Ray (``max_restarts=0``, ``max_task_retries=0``), so that every
attempt is counted per item across actors:

- an exception raised by ``process`` fails that attempt; the item is re-queued, preferring an actor
  other than the ones that already failed it, until ``max_attempts``; then it is reported as
  ``ok=False`` with a one-line ``"Type: message"`` error. A bad item never fails the run.
- an actor that dies (killed, segfault, OOM, ``os._exit``) fails the attempt of its in-flight item
  and is replaced by a fresh actor.
- a ``worker_factory`` that fails in several consecutive actor starts (corrupt weights, no GPU)
  raises :class:`PoolStartError` instead of looping forever.

:func:`run_pool` needs an initialised Ray: :func:`ensure_ray` is the one place that connects to or starts
one. The pool's actors are always killed when :func:`run_pool` returns or raises. An :class:`ActorPool`
keeps them between runs instead (a batch's groups), until it is closed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
import ray.exceptions

from slomo_core.errors import SlomoError
from slomo_core.settings import PoolSettings

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 500
_POLL_S = 1.0
_CLOSE_TIMEOUT_S = 5.0


class PoolStartError(SlomoError):
    """No actor could be started: the worker factory keeps failing, or resources never appear."""


@dataclass(frozen=True)
class ItemResult:
    """Outcome of one item: its value, or the last error after ``attempts`` tries.

    ``worker`` is the id (``host:pid``) of the actor that ran the last attempt; None if the item
    never reached an actor.
    """

    key: str
    ok: bool
    value: Any | None
    error: str | None
    attempts: int
    worker: str | None


def ensure_ray(address: str | None = None, **init_kwargs: Any) -> None:
    """Connect to (``address``) or start a local Ray, unless this process already did.

    Callers decide ``include_dashboard`` and the like through ``init_kwargs``; no ``runtime_env`` is
    set, so actors import the code installed on the nodes. Ray's own rule for ``address=None``:
    join a cluster that ``ray start`` left running on this machine if there is one (resource
    arguments such as ``num_cpus`` are then rejected), else start a local one; ``"local"`` always
    starts a private local instance.
    """
    if ray.is_initialized():
        return
    init_kwargs.setdefault("ignore_reinit_error", True)
    ray.init(address=address, **init_kwargs)


def start_local_ray(**init_kwargs: Any) -> None:
    """A private local Ray (``address="local"``) whose services listen on 127.0.0.1 only.

    Ray binds its gRPC servers and agents to loopback only when the node IP is loopback, but ``ray.init``
    replaces 127.0.0.1 by the routable IP (``_node_ip_address`` cannot pin it). The node IP falls back to
    loopback when Ray's cluster mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, what Ray does on
    macOS and Windows); that flag is read when Ray is imported, so it is set on the loaded constant here,
    for this single-node Ray only. tests/test_pool.py checks every listening socket of such a Ray.
    """
    if ray.is_initialized():
        return
    from ray._private import ray_constants

    if hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        ray_constants.ENABLE_RAY_CLUSTER = False
    else:  # a Ray without the flag: still starts, the port test says what listens where
        log.warning("this Ray has no ENABLE_RAY_CLUSTER flag; its services may listen on all interfaces")
    ensure_ray("local", **init_kwargs)


def resolve_num_gpus(settings: PoolSettings) -> float:
    """GPUs to reserve per actor: the explicit setting, else 1 if the cluster has a GPU, else 0."""
    if settings.num_gpus_per_worker is not None:
        return settings.num_gpus_per_worker
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def one_line(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    """Collapse a (possibly multi-line) message into one bounded line for status rows and UIs."""
    flat = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    """``"Type: message"`` on one line; the original exception for Ray task errors, not Ray's dump."""
    if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None:
        exc = exc.cause
    if isinstance(exc, ray.exceptions.RayActorError):
        # Ray's message is a multi-line block whose last line says why the process went away.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else "actor died"
        reason = reason.split(" Some common causes")[0]
        return one_line(f"{type(exc).__name__}: {reason}")
    message = str(exc)
    return one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


class _PoolActor:
    """Runs inside the actor process: builds the worker once, then processes items one at a time.

    Exceptions from the factory and from ``process`` are caught here and returned as one-line
    messages, so the driver gets a clean error and the actor stays usable after a bad item.
    """

    def __init__(self, worker_factory: Callable[[], Any]) -> None:
        self._id = f"{socket.gethostname()}:{os.getpid()}"
        self._worker: Any = None
        self._start_error: str | None = None
        try:
            self._worker = worker_factory()
        except Exception as exc:  # reported by ready(); the driver kills this actor
            log.warning("worker factory failed in %s", self._id, exc_info=True)
            self._start_error = describe_exception(exc)

    def ready(self) -> tuple[str, str | None]:
        """(actor id, start error or None): resolves once the constructor has run."""
        return self._id, self._start_error

    def close(self) -> None:
        """Let the worker free what it holds outside the process (e.g. its temp cache) before the kill."""
        close = getattr(self._worker, "close", None)
        if close is not None:
            close()

    def run(self, key: str, item: Any) -> tuple[bool, Any]:
        """(True, value) or (False, one-line error)."""
        try:
            return True, self._worker.process(item)
        except Exception as exc:
            log.warning("item %s failed in %s", key, self._id, exc_info=True)
            return False, describe_exception(exc)


_RemotePoolActor = ray.remote(_PoolActor)


@dataclass(eq=False)
class _Slot:
    """Driver-side view of one actor."""

    handle: Any
    created: float
    worker: str | None = None  # set once ready
    item: int | None = None  # index of the in-flight item


@dataclass
class _ItemState:
    attempts: int = 0
    failed_on: set[str] = field(default_factory=set)
    last_worker: str | None = None


def run_pool(
    items: Sequence[tuple[str, Any]],
    worker_factory: Callable[[], Any],
    settings: PoolSettings,
    on_result: Callable[[ItemResult], None] | None = None,
) -> list[ItemResult]:
    """Process ``(key, item)`` pairs on a pool of actors; one result per item, in input order.

    Needs an initialised Ray (:func:`ensure_ray`). ``worker_factory`` is pickled to each actor and
    called once there; it returns an object with ``process(item) -> value``. Each actor holds at
    most one in-flight item. ``on_result`` is called in the driver as each item is settled
    (success or final failure); an exception from it is logged, not raised, so a failing progress
    update cannot abort a batch. Raises :class:`PoolStartError` if actors cannot be started.
    """
    _check_keys(items)
    if not items:
        return []
    return _Pool(items, worker_factory, settings, on_result).run()


def _check_keys(items: Sequence[tuple[str, Any]]) -> None:
    keys = [key for key, _ in items]
    if len(set(keys)) != len(keys):
        raise ValueError("item keys must be unique")


class ActorPool:
    """Actors that outlive one run, so that a batch's groups share them: each actor builds its worker (loads
    the model) once per batch, not once per group.

    :meth:`run` is :func:`run_pool` on these actors. Actors idle when a run ends wait for the next run;
    :meth:`close` (or leaving the ``with`` block) ends them. A run that raises kills its actors as
    :func:`run_pool` does, and the next run starts fresh ones. An actor that died while idle fails the
    attempt of the first item sent to it, which is retried on another actor like any lost attempt.
    """

    def __init__(self, worker_factory: Callable[[], Any], settings: PoolSettings) -> None:
        self.worker_factory = worker_factory
        self.settings = settings
        self._idle: list[tuple[_Slot, Any]] = []  # (actor, its ready probe while it is still starting)

    def __enter__(self) -> ActorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, items: Sequence[tuple[str, Any]],
            on_result: Callable[[ItemResult], None] | None = None) -> list[ItemResult]:
        _check_keys(items)
        if not items:
            return []
        return _Pool(items, self.worker_factory, self.settings, on_result, self).run()

    def close(self) -> None:
        slots = [slot for slot, _ in self._idle]
        self._idle = []
        _close_gracefully([slot.handle for slot in slots if slot.worker is not None])
        for slot in slots:
            _kill(slot.handle)


class _Pool:
    """State of one :func:`run_pool` call (kept off module level: no global state)."""

    def __init__(
        self,
        items: Sequence[tuple[str, Any]],
        worker_factory: Callable[[], Any],
        settings: PoolSettings,
        on_result: Callable[[ItemResult], None] | None,
        actors: ActorPool | None = None,
    ) -> None:
        self.items = list(items)
        self.factory = worker_factory
        self.settings = settings
        self.on_result = on_result
        self.results: list[ItemResult | None] = [None] * len(self.items)
        self.states = [_ItemState() for _ in self.items]
        self.queue: deque[int] = deque(range(len(self.items)))
        self.slots: list[_Slot] = []
        self.pending: dict[Any, tuple[_Slot, int | None]] = {}  # ref -> (slot, item index | None=ready probe)
        self.start_failures = 0
        self.remaining = len(self.items)
        self.options = {
            "num_cpus": settings.num_cpus_per_worker,
            "num_gpus": resolve_num_gpus(settings),
            "max_restarts": 0,
            "max_task_retries": 0,
        }
        self.actors = actors
        if actors is not None:  # the actors earlier runs left idle
            for slot, probe in actors._idle:
                self.slots.append(slot)
                if probe is not None:
                    self.pending[probe] = (slot, None)
            actors._idle = []

    # -- main loop -------------------------------------------------------------------------------

    def run(self) -> list[ItemResult]:
        log.info(
            "pool: %d items on %d actors (cpus=%s gpus=%s each)",
            len(self.items), min(self.settings.workers, len(self.items)),
            self.options["num_cpus"], self.options["num_gpus"],
        )
        try:
            while self.remaining:
                self._top_up()
                self._dispatch()
                done, _ = ray.wait(list(self.pending), num_returns=1, timeout=_POLL_S)
                if not done:
                    self._check_start_timeout()
                    continue
                for ref in done:
                    if ref not in self.pending:  # its actor was dropped meanwhile
                        continue
                    slot, index = self.pending.pop(ref)
                    if index is None:
                        self._on_ready(slot, ref)
                    else:
                        self._on_item(slot, index, ref)
        finally:
            if self.actors is not None and not self.remaining:
                self.actors._idle = self._detach_idle()
            self._kill_all()
        return [result for result in self.results if result is not None]

    def _top_up(self) -> None:
        """Keep min(workers, unsettled items) actors alive (initial start and replacements)."""
        while len(self.slots) < min(self.settings.workers, self.remaining):
            handle = _RemotePoolActor.options(**self.options).remote(self.factory)
            slot = _Slot(handle=handle, created=time.monotonic())
            self.slots.append(slot)
            self.pending[handle.ready.remote()] = (slot, None)

    def _dispatch(self) -> None:
        for slot in self.slots:
            if slot.worker is None or slot.item is not None:
                continue
            index = next((i for i in self.queue if self._eligible(i, slot)), None)
            if index is None:
                continue
            self.queue.remove(index)
            state = self.states[index]
            state.attempts += 1
            state.last_worker = slot.worker
            slot.item = index
            key, item = self.items[index]
            self.pending[slot.handle.run.remote(key, item)] = (slot, index)

    def _eligible(self, index: int, slot: _Slot) -> bool:
        """An actor that already failed this item takes it only if every other actor did too.

        An actor still starting counts as another candidate (it is usually seconds away), unless it
        has been pending longer than start_timeout_s, so a retry never waits forever on it.
        """
        failed_on = self.states[index].failed_on
        if not self.settings.retry_on_other_actor or slot.worker not in failed_on:
            return True
        timeout = self.settings.start_timeout_s
        now = time.monotonic()
        for other in self.slots:
            if other is slot:
                continue
            if other.worker is None:
                if timeout is None or now - other.created <= timeout:
                    return False
            elif other.worker not in failed_on:
                return False
        return True

    # -- completions -----------------------------------------------------------------------------

    def _on_ready(self, slot: _Slot, ref: Any) -> None:
        try:
            worker, error = ray.get(ref)
        except ray.exceptions.RayError as exc:
            worker, error = None, describe_exception(exc)
        if error is None:
            slot.worker = worker
            self.start_failures = 0
            log.debug("pool: actor %s ready", worker)
            return
        self.start_failures += 1
        log.warning(
            "pool: actor %s failed to start (%d/%d): %s",
            worker or "?", self.start_failures, self.settings.max_start_failures, error,
        )
        self._drop(slot)
        if self.start_failures >= self.settings.max_start_failures:
            raise PoolStartError(
                f"worker failed to start in {self.start_failures} consecutive actors: {error}"
            )

    def _on_item(self, slot: _Slot, index: int, ref: Any) -> None:
        slot.item = None
        try:
            ok, payload = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # e.g. a value that fails to pickle
            ok, payload = False, describe_exception(exc)
        except ray.exceptions.RayError as exc:  # the actor died or is unreachable: replace it
            ok, payload = False, describe_exception(exc)
            log.warning("pool: actor %s lost while on %s: %s", slot.worker, self.items[index][0], payload)
            self._drop(slot)
        if ok:
            self._settle(index, ItemResult(self.items[index][0], True, payload, None,
                                           self.states[index].attempts, self.states[index].last_worker))
        else:
            self._attempt_failed(index, payload)

    def _attempt_failed(self, index: int, error: str) -> None:
        key = self.items[index][0]
        state = self.states[index]
        if state.attempts >= self.settings.max_attempts:
            log.error("pool: %s failed after %d attempts: %s", key, state.attempts, error)
            self._settle(index, ItemResult(key, False, None, error, state.attempts, state.last_worker))
            return
        log.warning("pool: %s attempt %d/%d failed on %s, retrying: %s",
                    key, state.attempts, self.settings.max_attempts, state.last_worker, error)
        if state.last_worker:
            state.failed_on.add(state.last_worker)
        self.queue.appendleft(index)

    def _settle(self, index: int, result: ItemResult) -> None:
        self.results[index] = result
        self.remaining -= 1
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("pool: on_result callback failed for %s", result.key)

    # -- actor lifecycle -------------------------------------------------------------------------

    def _check_start_timeout(self) -> None:
        """Fail if no actor has come up within start_timeout_s (e.g. resources that never appear)."""
        timeout = self.settings.start_timeout_s
        if timeout is None or any(slot.worker for slot in self.slots) or not self.slots:
            return
        waited = time.monotonic() - min(slot.created for slot in self.slots)
        if waited > timeout:
            raise PoolStartError(
                f"no actor started within {timeout:g} s; does the cluster have "
                f"{self.options['num_cpus']:g} CPU / {self.options['num_gpus']:g} GPU free per actor?"
            )

    def _drop(self, slot: _Slot) -> None:
        self.slots.remove(slot)
        for ref in [ref for ref, (owner, _) in self.pending.items() if owner is slot]:
            del self.pending[ref]
        _kill(slot.handle)

    def _detach_idle(self) -> list[tuple[_Slot, Any]]:
        """Take the actors without an item in flight off this run, each with its ready probe if still starting."""
        probes = {slot: ref for ref, (slot, index) in self.pending.items() if index is None}
        idle = [(slot, probes.get(slot)) for slot in self.slots if slot.item is None]
        for slot, probe in idle:
            self.slots.remove(slot)
            self.pending.pop(probe, None)
        return idle

    def _kill_all(self) -> None:
        # Idle actors only: a busy one would answer after its item (a Ctrl-C must not wait for that);
        # what a killed actor leaves is swept by the next run.
        _close_gracefully([slot.handle for slot in self.slots if slot.worker is not None and slot.item is None])
        for slot in self.slots:
            _kill(slot.handle)
        self.slots.clear()
        self.pending.clear()


def _close_gracefully(handles: Sequence[Any], timeout_s: float = _CLOSE_TIMEOUT_S) -> None:
    """Ask live actors to clean up (bounded wait): ray.kill ends a process without running its finalizers."""
    refs = []
    for handle in handles:
        try:
            refs.append(handle.close.remote())
        except Exception:  # the actor is gone: nothing to ask
            log.debug("pool: close could not be sent", exc_info=True)
    if refs:
        try:
            ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        except Exception:  # cleanup is best effort; the next run sweeps what is left
            log.debug("pool: close failed", exc_info=True)


def _kill(handle: Any) -> None:
    try:
        ray.kill(handle, no_restart=True)
    except Exception:  # already dead, or Ray is going away: nothing left to free
        log.debug("pool: ray.kill failed", exc_info=True)
