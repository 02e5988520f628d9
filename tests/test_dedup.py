"""--dedup: repeats of the previous frame are found once per source and interpolated over at their real times.

Sources and outputs are FFV1 in Matroska (lossless), so decoded frames compare exactly: a difference is
the pipeline's, never codec noise. Every clip here is at 25 or 50 fps and its outputs at whole
milliseconds, which Matroska stores exactly.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from flows.cli import main
from slomo_core.convert import ConvertOptions, convert_locally
from slomo_core.dedup import MAX_DROPPED_RUN, plan_repeats, repeat_score, scan_repeats
from slomo_core.errors import ConfigError
from slomo_core.interp.dis import DISInterpolator
from slomo_core.plan import ChunkLength, chunk_boundaries
from slomo_core.settings import ConversionSettings
from slomo_core.timestamps import OutputFrame, OutputTimeline, RateSpec, retimed
from slomo_core.video.decode import iter_frames
from slomo_core.video.encode import EncoderSettings
from slomo_core.video.probe import probe

from clips import make_clip, moving_square_frames

LOSSLESS = EncoderSettings(codec="ffv1")
DISTINCT = 8  # pictures in the test clips


def _decoded(path: str) -> tuple[list[np.ndarray], list[Fraction]]:
    tb = probe(path).time_base
    frames = list(iter_frames(path))
    return [f.image for f in frames], [f.pts * tb for f in frames]


def _lossless_clip(path: Path, frames: list[np.ndarray], step_ms: int) -> str:
    return make_clip(str(path), frames, [k * step_ms for k in range(len(frames))], Fraction(1, 1000), codec="ffv1")


@pytest.fixture(scope="module")
def pictures() -> list[np.ndarray]:
    return moving_square_frames(DISTINCT, 64, 48, dx=3, dy=1)


@pytest.fixture(scope="module")
def on_twos(tmp_path_factory: pytest.TempPathFactory, pictures: list[np.ndarray]) -> tuple[str, str]:
    """The same 8 pictures at 25 fps, and at 50 fps with every picture shown twice (animation on twos)."""
    folder = tmp_path_factory.mktemp("twos")
    plain = _lossless_clip(folder / "plain.mkv", pictures, 40)
    doubled = _lossless_clip(folder / "doubled.mkv", [p for p in pictures for _ in range(2)], 20)
    return plain, doubled


# -- decisions ---------------------------------------------------------------------------------------------


def test_runs_of_repeats_are_dropped_up_to_the_limit_and_stills_are_kept() -> None:
    moving, same = 50.0, 0.0
    scores = [moving, same, moving]  # frame 2 repeats frame 1
    scores += [same] * MAX_DROPPED_RUN + [moving]  # frames 4..6 repeat frame 3: still a hold
    scores += [same] * (MAX_DROPPED_RUN + 1) + [moving]  # frames 8..11 repeat frame 7: a frozen screen
    scores += [same]  # the last frame repeats the one before: kept, nothing follows it
    plan = plan_repeats(scores, threshold=3.0)
    assert plan.frames == len(scores) + 1 == 14
    assert plan.dropped == (2, 4, 5, 6)
    assert plan.held == (8, 9, 10, 11, 13)
    assert plan.report()["repeats_dropped"] == 4 and plan.report()["repeats_held"] == 5
    with pytest.raises(ValueError, match="dropped repeat"):
        plan.chunk_fields(2, 7)


def test_threshold_is_inclusive_and_checked() -> None:
    assert plan_repeats([3.0, 3.01], threshold=3.0).dropped == (1,)  # at the threshold: a repeat; above: not
    assert plan_repeats([3.01, 3.0], threshold=3.0).held == (2,)  # the last frame: kept
    with pytest.raises(ConfigError, match="--dedup-threshold"):
        plan_repeats([1.0], threshold=-1)
    with pytest.raises(ConfigError, match="needs --dedup"):
        ConversionSettings.from_values(factor=2, dedup_threshold=1.0)


def test_score_sees_a_small_moving_object_that_a_frame_mean_would_miss() -> None:
    still = np.full((45, 80), 100.0, dtype=np.float32)  # block means of a 360x640 frame
    moved = still.copy()
    moved[20, 30] = 100 + 12  # one 8x8 block brighter by 12 levels: 1/3600 of the frame
    assert repeat_score(still, moved) == pytest.approx(12.0)
    assert float(np.abs(moved - still).mean()) < 0.01


def test_boundaries_never_fall_on_a_dropped_repeat() -> None:
    dropped = frozenset(range(1, 40, 2))  # on twos: every odd frame is dropped
    for per_chunk in (1, 2, 3, 5, 7):
        ranges = chunk_boundaries(40, [0, 9, 21], per_chunk, avoid=dropped)
        assert ranges[0][0] == 0 and ranges[-1][1] == 40
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert not {s for s, _ in ranges} & dropped, per_chunk


def test_retimed_keeps_the_output_time_exactly() -> None:
    timeline = OutputTimeline(RateSpec("fps", target_fps=Fraction(60)), [0, 1001, 2002, 3003], Fraction(1, 24000))
    for i in range(3):
        pi, pj = timeline.input_pts[i], timeline.input_pts[i + 1]
        for out in timeline.pair_outputs(i):
            moved = retimed(out, pi, pj, 0, 0, 3003)
            assert moved.pts == out.pts and moved.pair == 0
            assert pi + out.t * (pj - pi) == moved.t * 3003  # the same source instant
    assert retimed(OutputFrame(1, Fraction(1, 3), 7), 10, 13, 1, 10, 13) == OutputFrame(1, Fraction(1, 3), 7)


# -- conversions -------------------------------------------------------------------------------------------


def test_scan_finds_every_repeat_of_a_clip_on_twos(on_twos: tuple[str, str]) -> None:
    plain, doubled = on_twos
    repeats = scan_repeats(doubled, 3.0, 2 * DISTINCT)
    assert repeats.dropped == tuple(range(1, 2 * DISTINCT - 1, 2))
    assert repeats.held == (2 * DISTINCT - 1,)  # the last picture's repeat ends the clip
    assert scan_repeats(plain, 3.0, DISTINCT).repeats == 0


@pytest.mark.parametrize("chunk", [ChunkLength(), ChunkLength(frames=3)], ids=["one-chunk", "3-frame-chunks"])
def test_clip_on_twos_gives_the_clip_without_repeats(tmp_path: Path, on_twos: tuple[str, str], chunk: ChunkLength) -> None:
    """Doubled 50 fps -> 100 fps equals plain 25 fps -> 100 fps: same pictures at the same times.

    With --dedup the doubled clip's repeats are interpolated at t = 1/2 between their neighbours, exactly
    what the plain clip's x4 gives there, so the outputs match bit for bit (lossless in and out, the same
    deterministic interpolator on the same decoded pictures). The doubled clip's last picture is shown
    one frame longer, so its output has two more frames, both that picture.
    """
    plain, doubled = on_twos
    dis = DISInterpolator()
    ref_out, dedup_out, steps_out = (str(tmp_path / n) for n in ("plain.mkv", "dedup.mkv", "steps.mkv"))
    convert_locally(plain, ref_out, dis, ConvertOptions(RateSpec("fps", factor=4), encoder=LOSSLESS, chunk=chunk))
    report = convert_locally(doubled, dedup_out, dis, ConvertOptions(RateSpec("fps", factor=2), encoder=LOSSLESS,
                                                                     dedup_threshold=3.0, chunk=chunk))
    assert report.repeats_dropped == DISTINCT - 1 and report.repeats_held == 1
    ref_frames, ref_times = _decoded(ref_out)
    frames, times = _decoded(dedup_out)
    assert report.output_frames == len(frames) == 2 * (2 * DISTINCT - 1) + 1  # the rule: pairs x N + the tail
    assert times == [Fraction(k, 100) for k in range(len(frames))]  # on the output grid
    assert times[: len(ref_times)] == ref_times
    for k, (got, want) in enumerate(zip(frames, ref_frames)):
        assert np.array_equal(got, want), f"output frame {k} differs from the clip without repeats"
    assert all(np.array_equal(f, ref_frames[-1]) for f in frames[len(ref_frames):])
    # Without --dedup the same clip steps: every other output pair is a copy, not the in-between picture.
    convert_locally(doubled, steps_out, dis, ConvertOptions(RateSpec("fps", factor=2), encoder=LOSSLESS, chunk=chunk))
    stepped, _ = _decoded(steps_out)
    # (an original frame keeps its own YUV samples; the copy made between two equal pictures went through RGB)
    def diff(x: np.ndarray, y: np.ndarray) -> int:
        return int(np.abs(x.astype(np.int16) - y.astype(np.int16)).max())

    assert diff(stepped[1], stepped[2]) <= 2 and diff(stepped[2], ref_frames[2]) > 20


def test_slow_motion_of_a_clip_on_twos_moves_evenly_chunked_or_not(tmp_path: Path, on_twos: tuple[str, str]) -> None:
    _, doubled = on_twos
    dis = DISInterpolator()
    outs = []
    for name, chunk in (("one.mkv", ChunkLength()), ("chunks.mkv", ChunkLength(frames=2))):
        out = str(tmp_path / name)
        report = convert_locally(doubled, out, dis, ConvertOptions(RateSpec("slowmo", factor=2), encoder=LOSSLESS,
                                                                   dedup_threshold=3.0, chunk=chunk))
        outs.append(_decoded(out))
        assert report.chunks == (1 if name == "one.mkv" else 8)
    (one, one_times), (chunked, chunked_times) = outs
    assert one_times == chunked_times == [Fraction(k * 20, 1000) for k in range(2 * (2 * DISTINCT - 1) + 1)]
    assert all(np.array_equal(a, b) for a, b in zip(one, chunked))
    # No two consecutive outputs are the same picture until the held end: the motion no longer steps.
    moving = one[: 4 * (DISTINCT - 1) + 1]
    assert all(not np.array_equal(a, b) for a, b in zip(moving, moving[1:]))


def test_frozen_screen_is_kept_still_and_the_rest_unchanged(tmp_path: Path, pictures: list[np.ndarray]) -> None:
    """Pictures 0..3 moving, picture 3 frozen for 6 more frames, then 4..7 moving: the freeze is not morphed."""
    frames = pictures[:4] + [pictures[3]] * 6 + pictures[4:]
    src = _lossless_clip(tmp_path / "frozen.mkv", frames, 40)
    dis = DISInterpolator()
    spec = RateSpec("fps", factor=2)
    with_dedup, without = str(tmp_path / "dedup.mkv"), str(tmp_path / "plain.mkv")
    report = convert_locally(src, with_dedup, dis, ConvertOptions(spec, encoder=LOSSLESS, dedup_threshold=3.0,
                                                                  chunk=ChunkLength(frames=4)))
    convert_locally(src, without, dis, ConvertOptions(spec, encoder=LOSSLESS, chunk=ChunkLength(frames=4)))
    assert report.repeats_held == 6 and report.repeats_dropped == 0
    got, times = _decoded(with_dedup)
    plain, plain_times = _decoded(without)
    assert times == plain_times and len(got) == 2 * (len(frames) - 1) + 1
    freeze = range(2 * 3, 2 * 9 + 1)  # outputs from frame 3's time to the last frozen frame's
    still = plain[freeze.start]  # frame 3 as the pipeline writes an original frame
    for k, (a, b) in enumerate(zip(got, plain)):
        if k in freeze:
            assert np.array_equal(a, still), f"output {k} inside the freeze is not the frozen picture"
        else:
            assert np.array_equal(a, b), f"output {k} outside the freeze changed"


def test_dedup_changes_nothing_without_repeats(tmp_path: Path, on_twos: tuple[str, str]) -> None:
    plain, _ = on_twos
    dis = DISInterpolator()
    outputs = []
    for name, threshold in (("on.mkv", 3.0), ("off.mkv", None)):
        report = convert_locally(plain, str(tmp_path / name), dis,
                                 ConvertOptions(RateSpec("slowmo", factor=3), encoder=LOSSLESS, dedup_threshold=threshold))
        outputs.append(_decoded(str(tmp_path / name)))
        assert report.repeats_dropped == (0 if threshold else None)
    (a, a_times), (b, b_times) = outputs
    assert a_times == b_times and all(np.array_equal(x, y) for x, y in zip(a, b))


# -- command line and flow ---------------------------------------------------------------------------------


def test_cli_local_prints_the_counts(tmp_path: Path, on_twos: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, doubled = on_twos
    out = str(tmp_path / "cli.mkv")
    assert main(["convert", doubled, out, "--factor", "2", "--mode", "fps", "--codec", "ffv1", "--dedup",
                 "--chunk-frames", "5", "-q", "--local"]) == 0
    text = capsys.readouterr().out
    assert "16 -> 31 frames" in text and "dedup: 16 frames seen, 7 repeat(s) dropped, 1 kept (stills)" in text
    assert main(["convert", doubled, out, "--factor", "2", "--dedup-threshold", "2", "--local"]) == 2
    assert capsys.readouterr().err.strip() == "slomo: error: --dedup-threshold needs --dedup"


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_flow_path_equals_local(tmp_path: Path, on_twos: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, doubled = on_twos
    local, flow = str(tmp_path / "local.mkv"), str(tmp_path / "flow.mkv")
    argv = ["--factor", "2", "--mode", "fps", "--codec", "ffv1", "--dedup", "--chunk-frames", "4", "-q"]
    assert main(["convert", doubled, local, *argv, "--local"]) == 0
    assert main(["convert", doubled, flow, *argv, "--workers", "2"]) == 0
    text = capsys.readouterr().out.splitlines()[-1]
    assert "in 4 chunk(s)" in text and "dedup: 16 frames seen, 7 repeat(s) dropped, 1 kept (stills)" in text
    (a, a_times), (b, b_times) = _decoded(local), _decoded(flow)
    assert a_times == b_times and all(np.array_equal(x, y) for x, y in zip(a, b))
