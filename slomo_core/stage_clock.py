"""Busy time per pipeline stage (decode, model, encode, upload...), summed across threads.

Decode, model and encode overlap, so per-stage seconds can add up to more than the wall time: the gap
shows how much the overlap hides, and the largest stage is the one to make faster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class StageClock:
    """Thread-safe accumulator of seconds and call counts per stage name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}
        self._calls: dict[str, int] = {}

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds
            self._calls[stage] = self._calls.get(stage, 0) + 1

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)

    def timed(self, stage: str, function: Callable[..., R]) -> Callable[..., R]:
        def call(*args: object, **kwargs: object) -> R:
            with self.measure(stage):
                return function(*args, **kwargs)

        return call

    def timed_iter(self, stage: str, items: Iterator[T]) -> Iterator[T]:
        """Counts the time spent producing each item (e.g. decoding a frame), not the consumer's."""
        while True:
            with self.measure(stage):
                item = next(items, _END)
            if item is _END:
                return
            yield item  # type: ignore[misc]

    def merge(self, other: StageClock) -> None:
        """Add another clock's totals (e.g. one chunk's into a whole run's)."""
        seconds, calls = other.seconds(), other.calls()
        with self._lock:
            for stage, value in seconds.items():
                self._seconds[stage] = self._seconds.get(stage, 0.0) + value
                self._calls[stage] = self._calls.get(stage, 0) + calls.get(stage, 0)

    def seconds(self) -> dict[str, float]:
        with self._lock:
            return dict(self._seconds)

    def calls(self) -> dict[str, int]:
        with self._lock:
            return dict(self._calls)


_END = object()
