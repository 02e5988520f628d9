"""Per-job leases: two runs of the same job (an overlapping nightly batch, two operators) never both work on it.

A lease is ``LEASE.json`` in the job's work folder: who holds it (host, pid, run id), a token unique to
this holding, and when it expires. The holder renews it from a heartbeat thread every third of its time
to live; a run that finds a live lease held by another run stays off the job, and one that finds an
expired lease (its holder was killed, or lost its node) takes it over and resumes from the committed
chunks. Every change is a compare-and-swap (conditional.py): atomic on local files (``O_CREAT|O_EXCL``
plus an ``flock``) and on S3 (conditional PutObject/DeleteObject), so of two runs creating or taking over
the same lease exactly one wins; on other fsspec stores it is best effort (write, read back, compare).

Expiry compares wall clocks of different machines: keep the time to live well above their skew.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from slomo_core.conditional import ConditionalObject, Version, conditional_object
from slomo_core.errors import SlomoError, StorageError
from slomo_core.storage import StorageOptions, faults_named

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 60.0
_ACQUIRE_ROUNDS = 5  # create/take-over races lost in a row before giving up (each loss means another run won)


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")



@dataclass(frozen=True)
class LeaseOwner:
    """Who holds a lease, as an operator would look for it."""

    host: str
    pid: int
    run_id: str

    @classmethod
    def this_process(cls, run_id: str | None = None) -> LeaseOwner:
        return cls(socket.gethostname(), os.getpid(), run_id or uuid.uuid4().hex[:12])

    def __str__(self) -> str:
        return f"{self.host} pid {self.pid} (run {self.run_id})"


@dataclass(frozen=True)
class LeaseRecord:
    """The content of LEASE.json. ``token`` is unique per holding, so a lease re-taken by the same process
    after losing it is still told apart."""

    owner: LeaseOwner
    token: str
    expires_at: float  # seconds since the epoch, UTC
    ttl_seconds: float

    def live(self, now: float) -> bool:
        return now < self.expires_at

    def describe(self) -> str:
        until = _utc(self.expires_at)
        return f"{self.owner}, lease until {until}"

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseRecord | None:
        """The record, or None for bytes that are not one (treated as an expired lease)."""
        try:
            raw = json.loads(data)
            return cls(LeaseOwner(**raw["owner"]), str(raw["token"]), float(raw["expires_at"]), float(raw["ttl_seconds"]))
        except (ValueError, TypeError, KeyError):
            return None


class LeaseHeldError(SlomoError):
    """Another live run holds the job's lease; the message says who and until when."""

    def __init__(self, subject: str, holder: LeaseRecord) -> None:
        super().__init__(f"{subject}: being converted by {holder.describe()} (renewed while that run lives); "
                         "run again later to resume it if that run stops")
        self.holder = holder


class LeaseLostError(SlomoError):
    """This run's lease expired and another run took the job over: this run must not write its output."""


class JobLease:
    """One run's hold on one job. As a context manager: acquire, renew from a heartbeat thread, release on
    success, failure and Ctrl-C alike (a killed process's lease simply expires)."""

    def __init__(self, url: str, ttl_seconds: float = DEFAULT_LEASE_SECONDS, options: StorageOptions | None = None,
                 owner: LeaseOwner | None = None, subject: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"a lease needs a time to live > 0 s, got {ttl_seconds}")
        self.url, self.ttl_seconds, self.clock = url, ttl_seconds, clock
        self.owner = owner or LeaseOwner.this_process()
        self.subject = subject or url
        self.token = uuid.uuid4().hex
        self.store: ConditionalObject = conditional_object(url, options)
        self.taken_over: LeaseRecord | None = None  # the expired lease this run took over, if any
        self._version: Version | None = None
        self._expires: float | None = None  # the expiry of the last record this run wrote
        self._lock = threading.Lock()  # the heartbeat and the run itself both renew

    @property
    def held(self) -> bool:
        return self._version is not None

    def _record(self) -> bytes:
        self._writing = self.clock() + self.ttl_seconds
        return LeaseRecord(self.owner, self.token, self._writing, self.ttl_seconds).to_bytes()

    def _wrote(self, version: Version | None) -> Version | None:
        """Remember when a record this run just wrote expires (None: the write lost a race)."""
        if version is not None:
            self._expires = self._writing
        return version

    def acquire(self) -> None:
        """Create the lease, or take over an expired one; LeaseHeldError when another run holds it."""
        with faults_named(self.url, "taking the job's lease"):  # a failing store: one StorageError line
            self._acquire()

    def _acquire(self) -> None:
        with self._lock:
            for _ in range(_ACQUIRE_ROUNDS):
                current = self.store.read()
                if current is None:
                    self._version = self._wrote(self.store.create(self._record()))
                else:
                    data, version = current
                    holder = LeaseRecord.from_bytes(data)
                    if holder is not None and holder.token != self.token and holder.live(self.clock()):
                        raise LeaseHeldError(self.subject, holder)
                    self._version = self._wrote(self.store.replace(self._record(), version))
                    if self._version is not None and holder is not None and holder.token != self.token:
                        self.taken_over = holder
                        log.warning("%s: took over the expired lease of %s", self.subject, holder.describe())
                if self._version is not None:
                    return
            # every round lost a race: someone else holds it now (or the store keeps changing under us)
            current = self.store.read()
            holder = LeaseRecord.from_bytes(current[0]) if current else None
            if holder is not None:
                raise LeaseHeldError(self.subject, holder)
            raise LeaseLostError(f"{self.subject}: could not take the job's lease {self.url} (other runs kept changing it)")

    def _current_version(self) -> tuple[Version | None, LeaseRecord | None]:
        """The stored lease's version when it is still this holding's (a write whose reply was lost
        succeeded all the same: nobody else writes this token), and the record found."""
        current = self.store.read()
        holder = LeaseRecord.from_bytes(current[0]) if current else None
        return (current[1] if holder is not None and holder.token == self.token else None), holder

    def renew(self) -> None:
        """Push the expiry one time-to-live ahead; LeaseLostError when another run has taken the lease over.

        A store that fails meanwhile (full, unreachable) does not end the run while the last record this
        run wrote is unexpired: nobody can take a live lease over. Past that, the fault is raised (one line)."""
        try:
            with faults_named(self.url, "renewing the job's lease"):
                self._renew()
        except StorageError as fault:
            if self._expires is not None and self.clock() < self._expires:
                log.warning("%s: %s; it is still this run's until %s", self.subject, fault, _utc(self._expires))
                return
            raise

    def _renew(self) -> None:
        with self._lock:
            if self._version is None:
                raise LeaseLostError(f"{self.subject}: this run does not hold the job's lease {self.url}")
            version = self._wrote(self.store.replace(self._record(), self._version))
            if version is None:
                mine, holder = self._current_version()
                version = self._wrote(self.store.replace(self._record(), mine)) if mine is not None else None
            if version is None:
                self._version = None
                by = f"taken over by {holder.describe()}" if holder else "released by another run"
                raise LeaseLostError(f"{self.subject}: this run's lease expired and was {by}; "
                                     "it stops here and writes no output")
            self._version = version

    def ensure_held(self) -> None:
        """Renew now: called before the output is written, so that a run that lost its lease never writes it."""
        self.renew()

    def release(self) -> None:
        """Delete the lease if it is still this run's (never raises: it runs on the way out of failures too)."""
        with self._lock:
            version, self._version = self._version, None
            if version is None:
                return
            try:
                if not self.store.delete(version):
                    mine, _ = self._current_version()
                    if mine is None or not self.store.delete(mine):
                        log.warning("%s: lease %s was no longer this run's at release", self.subject, self.url)
            except Exception as exc:  # noqa: BLE001 - the lease then expires by itself
                log.warning("%s: could not release lease %s (%s); it expires by itself", self.subject, self.url, exc)

    def __enter__(self) -> JobLease:
        self.acquire()
        self._heartbeat = Heartbeat([self])
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._heartbeat.stop()
        self.release()


class Heartbeat:
    """Renews leases every third of their time to live from one daemon thread, so that a run holding the
    leases of a whole group of videos needs one thread, not one per video. A lease found lost is dropped
    (and logged); the run finds out at ``ensure_held`` before it writes that job's output."""

    def __init__(self, leases: Iterable[JobLease]) -> None:
        self.leases = list(leases)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slomo-lease-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        if self.leases:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        interval = min(lease.ttl_seconds for lease in self.leases) / 3
        while not self._stop.wait(interval):
            for lease in self.leases:
                if not lease.held:
                    continue
                try:
                    lease.renew()
                except LeaseLostError as exc:
                    log.error("%s", exc)
                except Exception as exc:  # noqa: BLE001 - a storage hiccup: the next beat tries again
                    log.warning("%s: could not renew lease %s (%s)", lease.subject, lease.url, exc)


def refuse_if_leased(url: str, options: StorageOptions | None, subject: str, now: float | None = None) -> None:
    """LeaseHeldError when a live lease is at ``url``: a cheap look before starting Prefect and Ray (the run
    still takes the lease itself, which is what decides)."""
    with faults_named(url, "reading the job's lease"):
        current = conditional_object(url, options).read()
    holder = LeaseRecord.from_bytes(current[0]) if current else None
    if holder is not None and holder.live(time.time() if now is None else now):
        raise LeaseHeldError(subject, holder)
