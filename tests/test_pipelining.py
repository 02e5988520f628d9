"""The decode/encode threads: order kept, memory bounded, errors surface in the caller, nothing hangs."""

from __future__ import annotations

import threading
import time

import pytest

from slomo_core.pipelining import BackgroundSink, prefetch


def test_prefetch_keeps_order_and_bounds_lookahead() -> None:
    produced: list[int] = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    seen = []
    for item in prefetch(source(), depth=3):
        time.sleep(0.001)
        assert len(produced) - len(seen) <= 3 + 2  # queue depth, one in hand, one being put
        seen.append(item)
    assert seen == list(range(50))


def test_prefetch_reraises_producer_error_in_consumer() -> None:
    def source():
        yield 1
        raise ValueError("corrupt frame 2")

    with pytest.raises(ValueError, match="corrupt frame 2"):
        list(prefetch(source(), depth=2))


def test_prefetch_abandoned_early_stops_its_thread() -> None:
    before = threading.active_count()
    for item in prefetch(iter(range(10_000)), depth=2):
        if item == 3:
            break
    time.sleep(0.3)
    assert threading.active_count() <= before


def test_sink_consumes_in_order_and_close_waits() -> None:
    got: list[int] = []
    sink: BackgroundSink[int] = BackgroundSink(lambda x: (time.sleep(0.001), got.append(x)), depth=4)
    for i in range(40):
        sink.submit(i)
    sink.close()
    assert got == list(range(40))


def test_sink_error_surfaces_on_submit_or_close() -> None:
    def consume(x: int) -> None:
        if x == 5:
            raise OSError("disk full")

    sink: BackgroundSink[int] = BackgroundSink(consume, depth=2)
    with pytest.raises(OSError, match="disk full"):
        for i in range(1000):
            sink.submit(i)
        sink.close()
