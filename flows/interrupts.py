"""Ctrl-C and SIGTERM on the flow path: the helpers outlive the signal, the driver stops them in order, in bounded time.

A terminal sends SIGINT to its whole foreground process group. Ray's local processes start with SIGINT blocked, so
they are still there when the driver cleans up; Prefect's ephemeral API server did not, so it died first and the
driver's last state update failed with a traceback a minute later. Here the API server starts with SIGINT blocked
too, and SIGTERM (what batch schedulers send) raises KeyboardInterrupt like SIGINT. On either signal the pool kills
its actors, Prefect marks the flow run (Crashed, "aborted by an interrupt signal"), and :func:`orderly_shutdown`
stops the Ray it started and removes the scratch folders the killed actors left; Prefect's exit handler stops its
server. Committed chunks stay in the job's work folder, so a re-run resumes them. A watchdog armed by the signal
ends the process if all that overruns its deadline: nothing waits forever.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

RESUME_HINT = "committed chunks kept, re-run the same command to resume"
CLEANUP_DEADLINE_S = 8.0  # from the signal to the exit: the user waits 10 s at most, interpreter exit included
_HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, after the orderly shutdown; ``str()`` says what was kept."""


def interrupted_line(detail: str) -> str:
    """The one line the CLI prints for an interrupted run."""
    return f"slomo: interrupted; {detail}"


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT held back in this thread. Processes started meanwhile inherit the mask and ignore a terminal's Ctrl-C
    (what Ray does for its own); a Ctrl-C that arrives meanwhile is delivered when the block ends, not lost."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_prefect_api() -> Any | None:
    """Prefect's ephemeral API server, started now and deaf to Ctrl-C, when no API URL is configured (else None).

    Prefect would start the same server (a per-process singleton) lazily at the first client; starting it here,
    with SIGINT blocked, keeps it alive until the driver has marked the interrupted flow run.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    from slomo_core.errors import SlomoError

    if get_current_settings().api.url:
        return None
    server = SubprocessASGIServer()
    try:
        with sigint_blocked():
            server.start()
    except RuntimeError as exc:  # Prefect's "Timed out while attempting to connect to ephemeral Prefect API server"
        raise SlomoError(f"Prefect's local API server did not start ({str(exc).splitlines()[0]}); raise "
                         "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS on a busy machine, or use --local") from None
    return server


class _Watchdog:
    """Armed by the first signal: if the process still runs ``deadline_s`` later, it ends it (exit 130)."""

    def __init__(self, deadline_s: float, last_words: Callable[[], None]) -> None:
        self.deadline_s, self.last_words = deadline_s, last_words
        self.cleaned_up = False  # then the CLI has printed its line (or is about to): say nothing more
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.deadline_s, self._give_up)
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _give_up(self) -> None:
        from flows.cli import EXIT_INTERRUPTED

        try:
            self.last_words()
        finally:
            if not self.cleaned_up:
                print(interrupted_line(f"{RESUME_HINT} (cleanup cut short after {self.deadline_s:g} s)"),
                      file=sys.stderr, flush=True)
            os._exit(EXIT_INTERRUPTED)  # Ray's local processes die with this process (kernel fate-sharing)


@contextmanager
def _handlers(handler: Callable[[int, Any], Any] | int) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM, the previous ones back after; only the main thread may set them, so
    elsewhere (an application embedding slomo) the signals are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in _HANDLED}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _arming_on_signal(watchdog: _Watchdog) -> Iterator[None]:
    """Arm the watchdog the moment SIGINT or SIGTERM arrives, whichever Python handler then runs.

    Inside a flow run Prefect's own SIGTERM handler runs, not ours; and a SIGTERM sent to the whole group also
    stops Prefect's server, after which Prefect retries marking the run for a minute. Python writes the number of
    every signal it handles to the wakeup fd, so a thread reading it sees each one. Left out (nothing armed early)
    where not in the main thread or where someone else already uses the wakeup fd.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    if previous != -1:  # taken: give it back
        signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)
        yield
        return

    def listen() -> None:
        while received := os.read(read_end, 64):
            if any(number in _HANDLED for number in received):
                watchdog.arm()

    listener = threading.Thread(target=listen, name="slomo-signals", daemon=True)
    listener.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(-1)
        os.close(write_end)  # the listener reads EOF and ends
        listener.join(timeout=1)
        os.close(read_end)


def _is_interrupt(exc: BaseException | None) -> bool:
    """Ctrl-C or SIGTERM, or an error raised while handling one: a SIGTERM sent to the whole process group also
    stops Prefect's server, and Prefect's attempt to mark the run then fails with a connection error."""
    from prefect.exceptions import TerminationSignal

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (KeyboardInterrupt, TerminationSignal)):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


@contextmanager
def orderly_shutdown(ray_address: str | None, start_ray: bool = True,
                     deadline_s: float = CLEANUP_DEADLINE_S) -> Iterator[None]:
    """Run a flow with its helpers started Ctrl-C-proof, and turn Ctrl-C or SIGTERM into :class:`Interrupted`.

    Starts Prefect's ephemeral API (when configured) and Ray (a private local one unless ``ray_address``) before
    the flow, from this thread, so the flow finds them running and the Ray started here is stopped here, however
    the block ends. Ray starts before the handlers are set: ``ray.init`` installs its own SIGTERM handler
    (``sys.exit``), which would otherwise replace ours. Inside a flow run, Prefect's SIGTERM handler raises its
    TerminationSignal instead; that is an interrupt too. ``start_ray=False`` leaves Ray to the flow (a batch with
    nothing to do starts none); its SIGTERM handler then ends the run with exit 15, and Ray stops at exit.
    """
    import ray

    from slomo_core.scratch import sweep_stale
    from tasks.conversion import connect_ray

    server = start_prefect_api()
    ray_started = start_ray and not ray.is_initialized()
    if ray_started:
        # quiet unless -v: Ray's notices (token auth, "Started a local Ray") are warnings the user cannot act on
        verbose = logging.getLogger().getEffectiveLevel() <= logging.INFO
        connect_ray(ray_address, logging_level=logging.INFO if verbose else logging.ERROR)

    def last_words() -> None:  # from the watchdog thread: only what cannot hang
        process = getattr(server, "server_process", None)
        if process is not None:
            process.kill()
        sweep_stale()

    watchdog = _Watchdog(deadline_s, last_words)
    interrupted = False
    try:
        with _arming_on_signal(watchdog), _handlers(signal.default_int_handler):  # SIGTERM raises KeyboardInterrupt too
            yield
    except BaseException as exc:
        if not _is_interrupt(exc):
            raise
        interrupted = True
        watchdog.arm()  # armed already, unless the wakeup fd was taken
        raise Interrupted(RESUME_HINT) from None
    finally:
        with _handlers(signal.SIG_IGN):  # a second Ctrl-C must not cut the cleanup short; the watchdog bounds it
            if ray_started:
                ray.shutdown()
            sweep_stale()  # the scratch folders of killed actors, in this machine's temp dir
        watchdog.cleaned_up = True
        if not interrupted:
            watchdog.disarm()
