"""A run reads what it needs of the source once: the frame index in a run in this process (for a B-frame AVI
each read is a decode pass of the whole file), and the source's identity (a HEAD on object storage) before
the flow starts."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

import flows.runner
import slomo_core.plan
import slomo_core.video.decode
import slomo_core.video.probe
from flows.cli import main

from clips import make_clip, moving_square_frames


@pytest.fixture
def clip(tmp_path: Path) -> str:
    return make_clip(str(tmp_path / "in.mp4"), moving_square_frames(5, 64, 48), list(range(5)), Fraction(1, 25))


def _counted(calls: list[str], function: Callable) -> Callable:
    def wrapper(url, *args, **kwargs):
        calls.append(str(url))
        return function(url, *args, **kwargs)

    return wrapper


@pytest.fixture
def index_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every read_frame_index call: check_convertible's (the preflight's and the planner's) and the chunk decoder's."""
    calls: list[str] = []
    counted = _counted(calls, slomo_core.video.probe.read_frame_index)
    monkeypatch.setattr(slomo_core.video.probe, "read_frame_index", counted)
    monkeypatch.setattr(slomo_core.video.decode, "read_frame_index", counted)
    return calls


@pytest.mark.parametrize("run", [[], ["--local"]], ids=["default in process", "local"])
def test_a_run_in_this_process_indexes_the_source_once(tmp_path: Path, clip: str, index_reads: list[str],
                                                       run: list[str]) -> None:
    out = tmp_path / "out.mp4"
    assert main(["convert", clip, str(out), "--factor", "2", "--chunk-frames", "2", "-q", *run]) == 0
    assert index_reads[:-1] == [clip]  # preflight, planner, both chunks and the stitcher share one reading
    assert index_reads[-1].endswith("output.mp4")  # the stitched output, validated before it is moved into place
    index_reads.clear()
    assert len(slomo_core.video.probe.read_frame_timestamps(str(out))) == 9
    assert index_reads == [str(out)]  # the counter sees every read: the output's own, here


def test_a_source_changed_after_the_preflight_is_read_again(tmp_path: Path, clip: str, index_reads: list[str]) -> None:
    """The planner takes the preflight's reading only while the source's identity is the one checked."""
    from slomo_core.plan import ChunkLength, JobSettings, plan_job
    from slomo_core.storage import identity
    from slomo_core.timestamps import RateSpec

    info, index = slomo_core.video.probe.check_convertible(clip)
    checked = slomo_core.plan.CheckedSource(identity(clip), info, index)
    make_clip(clip, moving_square_frames(7, 64, 48), list(range(7)), Fraction(1, 25))  # replaced in place
    index_reads.clear()
    plan = plan_job(clip, str(tmp_path / "out.mp4"), str(tmp_path / "work"), JobSettings(spec=RateSpec("slowmo", 2)),
                    ChunkLength(frames=10), cache_dir=str(tmp_path / "cache"), checked=checked)
    assert index_reads == [clip] and plan.job["input_frames"] == 7


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_the_flow_path_looks_up_the_source_once_before_the_flow(tmp_path: Path, clip: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """layout_for's HEAD of the source serves the preflight too (the flow's planner makes its own)."""
    lookups: list[str] = []
    for module in (flows.runner, slomo_core.plan):  # the runner's own lookup, and job_layout_for's
        monkeypatch.setattr(module, "identity", _counted(lookups, module.identity))
    before_flow: list[int] = []
    private = flows.runner.keep_prefect_home_private

    def flow_starts() -> None:  # the first thing run_convert_flow does
        before_flow.append(len([url for url in lookups if url == clip]))
        private()

    monkeypatch.setattr(flows.runner, "keep_prefect_home_private", flow_starts)
    out = tmp_path / "flow.mp4"
    assert main(["convert", clip, str(out), "--factor", "2", "--chunk-frames", "2", "--workers", "2", "-q"]) == 0
    assert before_flow == [1]
    assert len(slomo_core.video.probe.read_frame_timestamps(str(out))) == 9
