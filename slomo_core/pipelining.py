"""Overlap decode, compute and encode: a thread on each side of the model, joined by bounded queues.

PyAV, OpenCV and torch release the GIL in their heavy loops, so a decoder thread and an encoder thread
run beside the interpolation on other cores. Queues are bounded, so memory stays flat; an error on
either side stops the other and surfaces in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()
_POLL_S = 0.1


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put unless told to stop (so a producer never blocks forever on an abandoned queue)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``depth`` ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(q, item, stop):
                    return
            _put(q, _DONE, stop)
        except BaseException as exc:  # handed to the consumer, raised there
            _put(q, _Failure(exc), stop)

    thread = threading.Thread(target=produce, name="slomo-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class BackgroundSink(Generic[T]):
    """Calls ``consume(item)`` for each submitted item, in order, in one background thread."""

    def __init__(self, consume: Callable[[T], None], depth: int) -> None:
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="slomo-encode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            try:
                self._consume(item)
            except BaseException as exc:
                self._error = exc
                self._stop.set()
                return

    def submit(self, item: T) -> None:
        if self._error is not None:
            raise self._error
        if not _put(self._queue, item, self._stop):
            raise self._error or RuntimeError("background sink stopped")

    def close(self) -> None:
        """Wait for everything submitted; re-raise the first error of the background thread."""
        if self._thread.is_alive() and not self._stop.is_set():
            _put(self._queue, _DONE, self._stop)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop without draining (the caller is already failing)."""
        self._stop.set()
        self._thread.join(timeout=5)
