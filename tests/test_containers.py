"""Every container at every rate (issue 9, item 3): .mkv rounds to its 1 ms clock like FFmpeg, .mov/.mp4 stay exact."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from slomo_core.convert import ConvertOptions, convert_locally
from slomo_core.errors import ConfigError, OutputError
from slomo_core.interp.dis import DISInterpolator
from slomo_core.plan import ChunkLength
from slomo_core.stitch import validate_output
from slomo_core.timestamps import RateSpec
from slomo_core.video.decode import iter_frames
from slomo_core.video.encode import EncoderSettings, round_to_clock
from slomo_core.video.probe import probe, read_frame_timestamps

from clips import make_clip, moving_square_frames

FFV1 = EncoderSettings(codec="ffv1")
# rate -> (time base, pts step) of the source, as cameras and FFmpeg write them
SOURCES = {
    "29.97": (Fraction(1, 30000), 1001),
    "30": (Fraction(1, 30), 1),
    "24": (Fraction(1, 24), 1),
    "60": (Fraction(1, 60), 1),
}


def _source(tmp_path: Path, rate: str, frames: int = 6, name: str = "in.mp4") -> str:
    time_base, step = SOURCES[rate]
    return make_clip(str(tmp_path / name), moving_square_frames(frames, 32, 32), [i * step for i in range(frames)],
                     time_base)


def _ms(seconds: Fraction) -> int:
    """Nearest millisecond, halves up: written here independently of the product's rounding."""
    return math.floor(seconds * 1000 + Fraction(1, 2))


@pytest.mark.parametrize("rate", list(SOURCES))
def test_mkv_takes_any_rate_rounded_to_its_clock_and_chunking_changes_nothing(tmp_path: Path, rate: str) -> None:
    src = _source(tmp_path, rate)
    time_base, step = SOURCES[rate]
    spec = RateSpec("fps", factor=2)
    one = convert_locally(src, str(tmp_path / "one.mkv"), DISInterpolator(), ConvertOptions(spec, encoder=FFV1))
    many = convert_locally(src, str(tmp_path / "many.mkv"), DISInterpolator(),
                           ConvertOptions(spec, encoder=FFV1, chunk=ChunkLength(frames=2)))
    assert (one.chunks, many.chunks) == (1, 3)
    exact = [Fraction(k * step, 2) * time_base for k in range(11)]  # 6 frames at 2x: 11 outputs, tail once
    stored = read_frame_timestamps(str(tmp_path / "one.mkv"))
    assert probe(str(tmp_path / "one.mkv")).time_base == Fraction(1, 1000)
    assert stored == [_ms(t) for t in exact]
    assert max(abs(Fraction(ms, 1000) - t) for ms, t in zip(stored, exact)) <= Fraction(1, 2000)
    assert one.output_timestamps.startswith("rounded to the container's 1/1000 s clock") and "half a tick" in one.output_timestamps
    assert read_frame_timestamps(str(tmp_path / "many.mkv")) == stored
    a, b = list(iter_frames(str(tmp_path / "one.mkv"))), list(iter_frames(str(tmp_path / "many.mkv")))
    assert len(a) == len(b) == 11 and all(np.array_equal(x.image, y.image) for x, y in zip(a, b))


def test_25_fps_into_mkv_is_still_exact(tmp_path: Path) -> None:
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(4, 32, 32), [0, 1, 2, 3], Fraction(1, 25))
    report = convert_locally(src, str(tmp_path / "out.mkv"), DISInterpolator(), ConvertOptions(RateSpec("fps", factor=2)))
    assert report.output_timestamps == "exact" and read_frame_timestamps(str(tmp_path / "out.mkv")) == list(range(0, 121, 20))


def test_15_fps_doubled_to_30_fps_in_mkv(tmp_path: Path) -> None:
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(5, 32, 32), list(range(5)), Fraction(1, 15))
    out = tmp_path / "out.mkv"
    report = convert_locally(src, str(out), DISInterpolator(), ConvertOptions(RateSpec("fps", target_fps=Fraction(30))))
    assert report.output_frames == 9
    assert read_frame_timestamps(str(out)) == [_ms(Fraction(j, 30)) for j in range(9)]  # 0, 33, 67, 100...
    assert report.output_timestamps != "exact"


@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_mp4_and_mov_stay_exact_at_ntsc_rates(tmp_path: Path, ext: str) -> None:
    src = _source(tmp_path, "29.97", frames=4)
    out = tmp_path / f"out{ext}"
    report = convert_locally(src, str(out), DISInterpolator(), ConvertOptions(RateSpec("fps", factor=2)))
    assert report.output_timestamps == "exact"
    assert probe(str(out)).time_base == Fraction(1, 60000)
    assert read_frame_timestamps(str(out)) == [k * 1001 for k in range(7)]


def test_slowmo_ntsc_into_mkv(tmp_path: Path) -> None:
    src = _source(tmp_path, "29.97", frames=4)
    out = tmp_path / "slow.mkv"
    report = convert_locally(src, str(out), DISInterpolator(), ConvertOptions(RateSpec("slowmo", factor=4)))
    assert read_frame_timestamps(str(out)) == [_ms(Fraction(k * 1001, 30000)) for k in range(13)]
    assert report.output_frames == 13 and report.output_timestamps != "exact"


def test_frames_closer_than_a_millisecond_are_refused_before_any_work(tmp_path: Path) -> None:
    src = _source(tmp_path, "60", frames=3)
    out = tmp_path / "fast.mkv"
    with pytest.raises(OutputError, match=r"fast\.mkv: frames 0\.260 ms apart do not fit the container's 1/1000 s clock"):
        convert_locally(src, str(out), DISInterpolator(), ConvertOptions(RateSpec("fps", factor=64)))
    assert not out.exists()
    convert_locally(src, str(tmp_path / "fast.mp4"), DISInterpolator(), ConvertOptions(RateSpec("fps", factor=64)))


def test_ffv1_goes_in_mkv_and_is_refused_in_mov_in_one_line_before_any_work(tmp_path: Path) -> None:
    src = _source(tmp_path, "29.97", frames=3)
    convert_locally(src, str(tmp_path / "ok.mkv"), DISInterpolator(), ConvertOptions(RateSpec("fps", factor=2), encoder=FFV1))
    assert probe(str(tmp_path / "ok.mkv")).codec == "ffv1"
    with pytest.raises(ConfigError, match=r"out\.mov: ffv1 cannot be stored in \.mov: use \.mkv$"):
        convert_locally(src, str(tmp_path / "out.mov"), DISInterpolator(),
                        ConvertOptions(RateSpec("fps", factor=2), encoder=FFV1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "ok.mkv"]


def test_validation_allows_half_a_tick_and_no_more(tmp_path: Path) -> None:
    src = _source(tmp_path, "30", frames=3)
    out = tmp_path / "out.mkv"
    convert_locally(src, str(out), DISInterpolator(), ConvertOptions(RateSpec("fps", factor=2)))
    exact = [Fraction(k, 60) for k in range(5)]
    assert "at most 0.333 ms" in validate_output(str(out), exact)  # 1/60 s = 16.667 ms, stored as 17
    with pytest.raises(OutputError, match="frame 1 is at 17/1000 s, the plan says .* half of the container's"):
        validate_output(str(out), [t - Fraction(1, 5000) * (k == 1) for k, t in enumerate(exact)])


def test_rounding_matches_ffmpeg() -> None:
    ms = Fraction(1, 1000)
    assert [round_to_clock(p, Fraction(1, 60), ms) for p in range(4)] == [0, 17, 33, 50]
    assert round_to_clock(1, Fraction(1, 2000), ms) == 1 and round_to_clock(-1, Fraction(1, 2000), ms) == -1


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_flow_job_report_says_mkv_timestamps_were_rounded(tmp_path: Path, capsys) -> None:
    from flows.cli import main

    src = _source(tmp_path, "29.97", frames=4)
    out = tmp_path / "out.mkv"
    assert main(["convert", src, str(out), "--factor", "2", "--mode", "fps", "--chunk-frames", "2", "-q"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "timestamps rounded to the container's 1/1000 s clock: at most 0.417 ms" in line, line
    assert read_frame_timestamps(str(out)) == [_ms(Fraction(k * 1001, 60000)) for k in range(7)]
    assert main(["convert", src, str(out), "--factor", "2", "--mode", "fps", "--chunk-frames", "2", "-q"]) == 0
    assert "timestamps rounded" in capsys.readouterr().out  # a finished job says it again, from its DONE marker
