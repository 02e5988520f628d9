"""bench/soak.py on a handful of videos: its invariants hold (a long soak is `python -m bench.soak`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import run_soak, table

pytestmark = pytest.mark.usefixtures("ray_session", "prefect_harness")


def test_soak_reuses_actors_across_groups_and_leaves_nothing_behind(tmp_path: Path) -> None:
    result = run_soak(4, tmp_path, workers=2, videos_per_pool=2)  # two groups on one set of two actors
    assert result.failures == []
    assert result.converted == result.outputs_present == 4
    reported = set(result.chunks_per_actor)  # pids the actors wrote into their commit markers
    assert 1 <= len(reported) <= 2, result.chunks_per_actor  # not two fresh actors per group
    assert reported <= {trace.pid for trace in result.actors}  # the processes watched are the ones that worked
    assert all(trace.peak_rss_mb > 0 for trace in result.actors)
    assert result.end.process.fds <= result.start.process.fds + 3
    assert result.end.object_refs <= result.start.object_refs
    assert result.end.object_store_objects <= result.start.object_store_objects
    assert result.temp_after == []
    assert "videos/min" in table(result)
