"""Real-world input timestamps (issue 14, item 7): AVIs with B-frames, sparse AVIs, streams without pts.

The files are written with PyAV the way real tools write them: AVI stores no presentation times, so
FFmpeg makes them up from the packet order and a B-frame stream shows frames whose pts go backwards;
a capture that drops frames leaves fewer frames than declared slots. Each must convert, with the
repair or the sparseness said once, and chunked output must equal one-chunk output.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from flows.cli import main
from flows.runner import preflight
from slomo_core.convert import ConvertOptions, convert_locally
from slomo_core.errors import InputError
from slomo_core.interp.dis import DISInterpolator
from slomo_core.plan import ChunkLength
from slomo_core.storage import upload
from slomo_core.timestamps import OutputTimeline, RateSpec
from slomo_core.video.decode import iter_frames
from slomo_core.video.encode import EncoderSettings
from slomo_core.video.probe import check_convertible, probe, read_frame_index, read_frame_timestamps
from slomo_core.video.pts_repair import pts_need_decoding, repair_timestamps, sparse_or_truncated

from clips import moving_square_frames, truncate_file

LOSSLESS = EncoderSettings(codec="ffv1")
SPARSE_PTS = [0, 1, 2, 5, 9, 10, 11, 20, 30, 31, 32, 33, 40, 50, 60, 61, 70, 80, 90, 99]  # 20 frames, 100 slots


def write_raw(path: Path, codec: str, n: int, *, fmt: str | None = None, pts: list[int] | None = None,
              options: dict[str, str] | None = None) -> str:
    """Frames encoded at 25 fps into ``path`` as PyAV (and so FFmpeg's muxers) write them."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = options or {}
        for i, image in enumerate(moving_square_frames(n, 64, 48, dx=3)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i if pts is None else pts[i]
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return str(path)


@pytest.fixture
def bframes_avi(tmp_path: Path) -> str:
    """H.264 with B-frames in AVI: the decoder shows pts 1, 3, 4, 2, ... (the issue's first file)."""
    return write_raw(tmp_path / "bframes.avi", "libx264", 16, options={"bf": "2", "g": "8"})


@pytest.fixture
def sparse_avi(tmp_path: Path) -> str:
    """20 frames over 100 declared slots, every one decodable (the issue's second file)."""
    return write_raw(tmp_path / "sparse.avi", "mpeg4", len(SPARSE_PTS), pts=SPARSE_PTS)


def _decoder_pts(path: str) -> list[int | None]:
    with av.open(path) as container:
        return [frame.pts for frame in container.decode(video=0)]


# ---------------------------------------------------------------- the rules, as pure functions


def test_repair_prefers_the_files_own_pts_then_dts_then_frame_order() -> None:
    assert repair_timestamps([0, 1, 2], [0, 1, 2], 1, "why") == ([0, 1, 2], None)
    pts, repair = repair_timestamps([1, 3, 2, 4], [0, 1, 2, 3], 1, "why")
    assert pts == [0, 1, 2, 3] and repair.method == "dts" and repair.frames == 3 and "why" in repair.describe()
    pts, repair = repair_timestamps([None, None, None], [None, None, None], 40, "no pts")
    assert pts == [0, 40, 80] and repair.method == "frame order" and repair.frames == 3
    pts, repair = repair_timestamps([100, 100, 300], [5, 5, 6], 100, "shared")  # dts repeat too: frame order
    assert pts == [5, 105, 205] and repair.method == "frame order"


def test_which_packet_timestamps_need_decoding() -> None:
    assert pts_need_decoding([0, 3, 1, 2], reorders=True) is None  # real B-frame pts go back in decode order
    assert pts_need_decoding([0, 1, 2, 3], reorders=False) is None
    assert "display order" in pts_need_decoding([1, 2, 3, 4], reorders=True)
    assert "without pts" in pts_need_decoding([0, None, 2], reorders=False)
    assert "sharing" in pts_need_decoding([0, 1, 1], reorders=False)


def test_sparse_reaches_the_declared_end_truncated_stops_short() -> None:
    assert sparse_or_truncated([0, 1, 2], 3, 3, 1, 3) is None
    sparse = sparse_or_truncated(SPARSE_PTS, 20, 100, 1, 100)
    assert sparse.frames == 20 and sparse.declared == 100 and "20 frames over 100" in sparse.describe()
    assert sparse_or_truncated([0, 1, 2, 3], 4, 100, 1, 100) == "truncated: declared 100 frames, found 4"
    assert sparse_or_truncated([0, 1], 2, 100, None, None).startswith("truncated")
    every_24th = list(range(0, 6000, 24))  # 25 fps frames in an AVI of 1/600 s slots (a remuxed MP4)
    assert sparse_or_truncated(every_24th, 250, 6000, 1, 6000).frames == 250
    assert sparse_or_truncated(every_24th[:200], 200, 6000, 1, 6000).startswith("truncated")


# ---------------------------------------------------------------- real files


def test_bframes_avi_is_repaired_from_dts(bframes_avi: str) -> None:
    shown = _decoder_pts(bframes_avi)
    assert any(b <= a for a, b in zip(shown, shown[1:])), f"the file should show non-monotonic pts: {shown}"
    index = read_frame_index(bframes_avi)
    assert index.pts == list(range(16)) and index.keyframes == [0, 8]
    assert index.repair.method == "dts" and index.repair.frames > 0 and index.sparse is None
    frames = list(iter_frames(bframes_avi))
    assert [f.pts for f in frames] == index.pts and [f.index for f in frames] == list(range(16))
    for start, stop in [(0, 5), (3, 9), (8, 16), (15, 16)]:  # a range is the same frames as the whole
        part = list(iter_frames(bframes_avi, start, stop))
        assert [f.pts for f in part] == index.pts[start:stop]
        for got, want in zip(part, frames[start:stop]):
            np.testing.assert_array_equal(got.image, want.image)


def test_stream_without_any_timestamps_is_timed_by_frame_order(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw.h264", "libx264", 10, fmt="h264", options={"bf": "2"})
    assert set(_decoder_pts(raw)) == {None}
    index = read_frame_index(raw)
    step = 1 / (Fraction(25) * probe(raw).time_base)
    assert index.repair.method == "frame order" and index.repair.frames == 10
    assert index.pts == [int(k * step) for k in range(10)]
    assert [f.pts for f in iter_frames(raw, 4, 7)] == index.pts[4:7]


def test_sparse_avi_counts_the_frames_present(sparse_avi: str) -> None:
    index = read_frame_index(sparse_avi)
    assert index.pts == SPARSE_PTS and index.repair is None
    assert index.notes == ["sparse: 20 frames over 100 declared slots; output follows the real frame times"]
    assert [f.pts for f in iter_frames(sparse_avi)] == SPARSE_PTS


def test_truncated_avi_still_fails(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "noisy.avi"
    with av.open(str(path), "w") as out:  # noise: big frames, so cutting the file loses many of them
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    cut = truncate_file(str(path), str(tmp_path / "cut.avi"), 0.5)
    with pytest.raises(InputError, match="truncated: declared 30 frames, found"):
        read_frame_index(cut)


def _remux_to_avi(source: Path, target: Path) -> str:
    """Copy an MP4's H.264 packets into AVI untouched, as `ffmpeg -i a.mp4 -c copy a.avi` does."""
    from av.bitstream import BitStreamFilterContext

    with av.open(str(source)) as src, av.open(str(target), "w") as out:
        stream = src.streams.video[0]
        copy = out.add_stream_from_template(stream)
        annexb = BitStreamFilterContext("h264_mp4toannexb", stream)
        for packet in src.demux(stream):
            for converted in annexb.filter(packet if packet.dts is not None else None):
                converted.stream = copy
                out.mux(converted)
    return str(target)


@pytest.mark.parametrize("name, step", [("bikes.mp4", 24), ("carphone_pristine.mp4", 20)])
def test_real_footage_remuxed_into_avi_gives_the_same_frames(footage: Path, tmp_path: Path, name: str, step: int,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """Real B-frame footage copied into AVI: FFmpeg's made-up pts go backwards, the repaired ones do not,
    and every frame is the MP4's own, in order, also when decoded as a range after a keyframe seek."""
    avi = _remux_to_avi(footage / name, tmp_path / "clip.avi")
    shown = _decoder_pts(avi)
    assert any(b <= a for a, b in zip(shown, shown[1:]))
    index = read_frame_index(avi)
    assert index.repair.method == "dts" and index.sparse is not None  # 1/600 s slots, a frame every 20-24
    assert index.pts[0] == 0 and {b - a for a, b in zip(index.pts, index.pts[1:])} <= {step, step + 1}  # slot rounding
    original = read_frame_index(str(footage / name))
    assert index.keyframes == original.keyframes and original.notes == [] and original.seek_points == {}
    reference = [f.image for f in iter_frames(str(footage / name), 0, 100)]
    caplog.set_level(logging.DEBUG, logger="slomo_core.video.decode")
    for start, stop in [(0, 100), (37, 45), (80, 100)]:  # bikes: 37 and 80 follow keyframes 30 and 76
        got = list(iter_frames(avi, start, stop, index=index))
        assert [f.pts for f in got] == index.pts[start:stop] and [f.index for f in got] == list(range(start, stop))
        for frame, want in zip(got, reference[start:stop]):
            np.testing.assert_array_equal(frame.image, want)
    assert "counting from the start" not in caplog.text  # the seeks landed where the index said
    lost = replace(index, seek_points={-5: 76})  # a seek point the decoder never shows: counted from the start
    got = list(iter_frames(avi, 80, 84, index=lost))
    assert [f.pts for f in got] == index.pts[80:84]
    np.testing.assert_array_equal(got[0].image, reference[80])


def test_probe_reports_the_repair_and_agrees_with_convert(bframes_avi: str, sparse_avi: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    for path, note in [(bframes_avi, "repaired: "), (sparse_avi, "sparse: 20 frames over 100")]:
        assert main(["probe", path]) == 0
        lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
        assert note in lines["timestamps"] and lines["convertible"] == "yes", lines
        assert lines["frames"] in ("16", "20")
    one = str(tmp_path / "one.avi")
    write_raw(Path(one), "mpeg4", 1)
    assert main(["probe", one]) == 0  # described, and told why it cannot be converted
    out = capsys.readouterr().out
    assert "convertible          no: " in out and "needs at least 2" in out
    assert main(["convert", one, str(tmp_path / "o.mp4"), "--factor", "2", "--local"]) == 1
    assert "needs at least 2" in capsys.readouterr().err


@pytest.mark.parametrize("spec", [RateSpec("slowmo", factor=2), RateSpec("fps", target_fps=Fraction(30))],
                         ids=["slowmo2", "fps30"])
@pytest.mark.parametrize("source", ["bframes_avi", "sparse_avi"])
def test_chunked_equals_unchunked_and_follows_the_real_frame_times(
        tmp_path: Path, source: str, spec: RateSpec, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(source)
    index = read_frame_index(path)
    timeline = OutputTimeline(spec, index.pts, probe(path).time_base)
    promised = [o.pts * timeline.time_base for o in timeline.all_outputs()]
    results = []
    for chunk in (ChunkLength(), ChunkLength(frames=3)):
        out = tmp_path / f"{source}-{chunk.frames}.mp4"
        report = convert_locally(path, str(out), DISInterpolator(), ConvertOptions(spec, encoder=LOSSLESS, chunk=chunk))
        assert report.timestamps == "; ".join(index.notes)
        tb = probe(str(out)).time_base
        decoded = list(iter_frames(str(out)))
        assert [f.pts * tb for f in decoded] == promised
        results.append([f.image for f in decoded])
    assert len(results[0]) == len(results[1])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_convert_says_what_was_repaired_in_one_warning_and_the_summary(
        bframes_avi: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out.mp4"
    assert main(["convert", bframes_avi, str(out), "--factor", "2", "--chunk-frames", "5", "--local", "-q"]) == 0
    captured = capsys.readouterr()
    assert "16 -> 31 frames" in captured.out and "timestamps repaired: " in captured.out
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{bframes_avi}: repaired: "), warnings
    assert read_frame_timestamps(str(out)) == list(range(31))  # 2 (p_i - p_0) + k (p_{i+1} - p_i), repaired p_i = i


# ---------------------------------------------------------------- the first frame, before anything starts


def _undecodable_video(path: Path) -> str:
    """A container whose video packets are noise: it opens, but no frame decodes."""
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 64, 48
        for i in range(6):
            packet = av.Packet(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 25)
            packet.is_keyframe = True
            out.mux(packet)
    return str(path)


def test_undecodable_first_frame_fails_in_one_line_before_any_work(tmp_path: Path, capsys) -> None:
    bad = _undecodable_video(tmp_path / "noise.avi")
    with pytest.raises(InputError):
        check_convertible(bad)
    started = time.perf_counter()
    assert main(["convert", bad, str(tmp_path / "o.mp4"), "--factor", "2", "--local", "-q"]) == 1
    assert time.perf_counter() - started < 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"slomo: error: {bad}: ") and "frame" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noise.avi"]  # no output, no scratch folder
    started = time.perf_counter()
    with pytest.raises(InputError, match="noise.avi"):
        preflight(bad, str(tmp_path / "o.mp4"), False, None, "drop")  # the flow path's check, before Prefect/Ray
    assert time.perf_counter() - started < 2


def test_remote_source_first_frame_checked_before_any_work(tmp_path: Path, s3_bucket, bframes_avi: str) -> None:
    bucket, options = s3_bucket
    bad = f"{bucket}/in/noise.avi"
    upload(_undecodable_video(tmp_path / "noise.avi"), bad, options)
    started = time.perf_counter()
    with pytest.raises(InputError, match=f"{bad}: "):
        preflight(bad, f"{bucket}/out/o.mp4", False, options, "drop")
    assert time.perf_counter() - started < 2
    good = f"{bucket}/in/good.avi"
    upload(bframes_avi, good, options)
    preflight(good, f"{bucket}/out/o.mp4", False, options, "drop")


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_flow_path_converts_a_repaired_avi_like_the_local_path(bframes_avi: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    flow_out, local_out = tmp_path / "flow.mkv", tmp_path / "local.mkv"
    common = ["--factor", "2", "--codec", "ffv1", "--chunk-frames", "5", "-q"]
    assert main(["convert", bframes_avi, str(flow_out), *common, "--flow"]) == 0
    text = capsys.readouterr().out
    assert "16 -> 31 frames in 3 chunk(s)" in text and "timestamps repaired: " in text, text
    assert main(["convert", bframes_avi, str(local_out), *common, "--local"]) == 0
    flow, local = list(iter_frames(str(flow_out))), list(iter_frames(str(local_out)))
    assert [f.pts for f in flow] == [f.pts for f in local] and len(flow) == 31
    for a, b in zip(flow, local):
        np.testing.assert_array_equal(a.image, b.image)
