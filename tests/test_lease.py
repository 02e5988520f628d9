"""Per-job leases: acquire, refuse while live, take over when expired (one winner), renew, release; on local
files and on moto's S3 (real conditional requests through s3fs)."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from slomo_core.conditional import conditional_object
from slomo_core.lease import Heartbeat, JobLease, LeaseHeldError, LeaseLostError, LeaseOwner, LeaseRecord, refuse_if_leased


class Clock:
    """A wall clock the test moves by hand, so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", "s3"])
def lease_url(request, tmp_path: Path):
    """(URL of a job's LEASE.json, storage options) on local files and on moto's S3."""
    if request.param == "local":
        return str(tmp_path / "work" / "job1" / "LEASE.json"), None
    bucket, options = request.getfixturevalue("s3_bucket")
    return f"{bucket}/work/job1/LEASE.json", options


def _lease(url_options, run: str, clock: Clock, ttl: float = 30.0) -> JobLease:
    url, options = url_options
    return JobLease(url, ttl, options, LeaseOwner("host-" + run, 1000 + len(run), run), subject="out.mp4", clock=clock)


def _holder(url_options) -> LeaseRecord | None:
    current = conditional_object(*url_options).read()
    return LeaseRecord.from_bytes(current[0]) if current else None


def test_acquire_writes_owner_and_expiry_and_release_removes_it(lease_url) -> None:
    clock = Clock()
    lease = _lease(lease_url, "a", clock, ttl=30)
    lease.acquire()
    holder = _holder(lease_url)
    assert holder is not None and holder.owner == LeaseOwner("host-a", 1001, "a")
    assert holder.token == lease.token and holder.expires_at == clock.now + 30
    lease.release()
    assert _holder(lease_url) is None and not lease.held
    lease.release()  # twice is harmless
    if lease_url[1] is None:  # nothing left behind on disk (the lock file goes with the lease)
        assert list(Path(lease_url[0]).parent.iterdir()) == []


def test_live_lease_refuses_a_second_run_and_names_the_holder(lease_url) -> None:
    clock = Clock()
    first = _lease(lease_url, "a", clock)
    first.acquire()
    with pytest.raises(LeaseHeldError) as caught:
        _lease(lease_url, "bb", clock).acquire()
    message = str(caught.value)
    assert message.startswith("out.mp4: being converted by host-a pid 1001 (run a), lease until 2027-01-15 08:00:30 UTC")
    assert "\n" not in message
    with pytest.raises(LeaseHeldError):
        refuse_if_leased(lease_url[0], lease_url[1], "out.mp4", now=clock.now)
    assert _holder(lease_url).token == first.token  # the refused run changed nothing


def test_expired_lease_is_taken_over_and_the_old_holder_finds_out(lease_url) -> None:
    clock = Clock()
    old = _lease(lease_url, "a", clock, ttl=10)
    old.acquire()
    clock.now += 10.5
    refuse_if_leased(lease_url[0], lease_url[1], "out.mp4", now=clock.now)  # expired: no refusal
    new = _lease(lease_url, "bb", clock, ttl=10)
    new.acquire()
    assert new.taken_over is not None and new.taken_over.owner.run_id == "a"
    assert _holder(lease_url).token == new.token
    with pytest.raises(LeaseLostError, match="taken over by host-bb pid 1002 \\(run bb\\)"):
        old.ensure_held()  # before writing its output: the old run stops
    old.release()  # not its lease any more: leaves the new holder's alone
    assert _holder(lease_url).token == new.token
    new.release()
    assert _holder(lease_url) is None


def test_renew_pushes_the_expiry_so_a_running_job_is_never_taken_over(lease_url) -> None:
    clock = Clock()
    lease = _lease(lease_url, "a", clock, ttl=10)
    lease.acquire()
    for _ in range(3):
        clock.now += 6
        lease.renew()
        assert _holder(lease_url).expires_at == clock.now + 10
        with pytest.raises(LeaseHeldError):
            _lease(lease_url, "bb", clock, ttl=10).acquire()
    lease.release()


def test_two_takers_of_one_expired_lease_one_wins(lease_url) -> None:
    """Both read the expired lease, both try to replace it: the conditional write lets exactly one through.

    Interleaved by hand: on S3 the atomicity is the server's (moto checks the condition and then stores, not
    under one lock, so a truly simultaneous race against moto would test moto); local files race for real below."""
    clock = Clock()
    _lease(lease_url, "dead", clock, ttl=5).acquire()
    clock.now += 6
    store_a, store_b = conditional_object(*lease_url), conditional_object(*lease_url)
    (_, seen_a), (_, seen_b) = store_a.read(), store_b.read()
    assert seen_a == seen_b
    won_a = store_a.replace(b'{"taker": "a"}', seen_a)
    won_b = store_b.replace(b'{"taker": "b"}', seen_b)
    assert won_a is not None and won_b is None
    assert store_b.read()[0] == b'{"taker": "a"}'
    assert store_b.create(b"x") is None and not store_b.delete(seen_b)  # stale version: no delete either


def test_corrupt_lease_counts_as_expired(lease_url) -> None:
    clock = Clock()
    assert conditional_object(*lease_url).create(b"not json") is not None
    lease = _lease(lease_url, "a", clock)
    lease.acquire()
    assert _holder(lease_url).token == lease.token
    lease.release()


def test_context_manager_heartbeat_keeps_a_short_lease_alive_and_releases_on_error(lease_url) -> None:
    url, options = lease_url
    with pytest.raises(RuntimeError, match="boom"):
        with JobLease(url, 0.6, options, subject="out.mp4") as lease:
            first = _holder(lease_url).expires_at
            time.sleep(1.5)  # more than two times to live: only renewals keep it
            assert _holder(lease_url).token == lease.token and _holder(lease_url).expires_at > first + 0.5
            with pytest.raises(LeaseHeldError):
                JobLease(url, 0.6, options).acquire()
            raise RuntimeError("boom")
    assert _holder(lease_url) is None


def test_heartbeat_drops_a_lost_lease_and_keeps_the_others(tmp_path: Path) -> None:
    leases = [JobLease(str(tmp_path / f"job{n}" / "LEASE.json"), 0.6) for n in range(2)]
    for lease in leases:
        lease.acquire()
    thief = conditional_object(leases[0].url)
    thief.replace(b"stolen", thief.read()[1])
    with Heartbeat(leases):
        time.sleep(0.5)
    assert not leases[0].held and leases[1].held
    assert json.loads(Path(leases[1].url).read_bytes())["token"] == leases[1].token
    leases[1].release()


def _race_for(url: str, start: float, results) -> None:
    time.sleep(max(0.0, start - time.time()))
    lease = JobLease(url, 30.0)
    try:
        lease.acquire()
        results.put(("won", lease.token))
    except LeaseHeldError:
        results.put(("refused", None))


@pytest.mark.parametrize("state", ["absent", "expired"])
def test_processes_racing_for_one_lease_on_local_files_one_wins(tmp_path: Path, state: str) -> None:
    """Real processes released at the same instant: exactly one creates (or takes over) the lease."""
    url = str(tmp_path / "job" / "LEASE.json")
    if state == "expired":
        dead = JobLease(url, 0.01)
        dead.acquire()
        time.sleep(0.05)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = time.time() + 0.5
    processes = [context.Process(target=_race_for, args=(url, start, results)) for _ in range(4)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    winners = [token for what, token in outcomes if what == "won"]
    assert len(winners) == 1 and sorted(what for what, _ in outcomes) == ["refused"] * 3 + ["won"]
    assert json.loads(Path(url).read_bytes())["token"] == winners[0]


def test_a_renewal_whose_reply_was_lost_still_counts(lease_url) -> None:
    """The store took a renewal but the reply never came (the run kept its old version): the token in the
    stored lease is still this run's, so the next renewal and the release go through."""
    clock = Clock()
    lease = _lease(lease_url, "a", clock)
    lease.acquire()
    stale = lease._version
    lease.renew()
    lease._version = stale  # as if the last reply had been lost
    clock.now += 5
    lease.renew()
    assert _holder(lease_url).expires_at == clock.now + 30
    lease._version = stale
    lease.release()
    assert _holder(lease_url) is None
