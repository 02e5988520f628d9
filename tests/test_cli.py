"""The `slomo` command: help, probe, convert, and one clear line for every kind of bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest
import torch

from flows.cli import build_parser, main, settings_from_args, storage_options
from flows.runner import IN_PROCESS_NOTE, runs_in_process
from slomo_core.model.checkpoint import save_superslomo
from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig
from slomo_core.video.decode import iter_frames
from slomo_core.video.probe import read_frame_timestamps

from clips import make_audio_only, make_clip, moving_square_frames, truncate_file


@pytest.fixture
def clip(tmp_path: Path) -> str:
    return make_clip(str(tmp_path / "in.mp4"), moving_square_frames(5, 64, 48), list(range(5)), Fraction(1, 25))


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], expect: str, code: int = 1) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("slomo: error: ") and "\n" not in err and "Traceback" not in err, err
    assert expect in err, err
    return err


def test_convert_and_probe(tmp_path: Path, clip: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.mp4"
    assert main(["convert", clip, str(out), "--factor", "3", "-q", "--local"]) == 0
    assert "5 -> 13 frames" in capsys.readouterr().out
    assert len(read_frame_timestamps(str(out))) == 13
    assert main(["probe", str(out)]) == 0
    text = capsys.readouterr().out
    assert "frames               13" in text and "time_base" in text


def test_fps_option_parses_ntsc(tmp_path: Path, clip: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", clip, str(tmp_path / "o.mp4"), "--fps", "59.94", "-q", "--local"]) == 0
    assert main(["probe", "--json", str(tmp_path / "o.mp4")]) == 0
    text = capsys.readouterr().out
    # 60000/1001 fps: the grid time base 1001/60000 is stored as 1/60000 with pts steps of 1001.
    assert '"time_base": "1/60000"' in text and '"last_pts": 10010' in text and '"frames": 11' in text


def test_network_with_weights_file(tmp_path: Path, clip: str) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    save_superslomo(SuperSloMo(SuperSloMoConfig(widths=(4, 8, 8, 8, 8, 8))), str(weights))
    out = tmp_path / "net.mp4"
    assert main(["convert", clip, str(out), "--factor", "2", "--model", "superslomo", "--weights", str(weights), "-q", "--local"]) == 0
    assert len(read_frame_timestamps(str(out))) == 9


def test_missing_input(tmp_path: Path, capsys) -> None:
    _fails(capsys, ["convert", str(tmp_path / "nope.mp4"), str(tmp_path / "o.mp4"), "--factor", "2"], "no such file")


def test_not_a_video(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.mp4").write_text("hello, not a video\n" * 20)
    _fails(capsys, ["convert", str(tmp_path / "notes.mp4"), str(tmp_path / "o.mp4"), "--factor", "2"], "notes.mp4")


def test_empty_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    _fails(capsys, ["probe", str(tmp_path / "empty.mp4")], "empty file")


def test_audio_only(tmp_path: Path, capsys) -> None:
    src = make_audio_only(str(tmp_path / "song.m4a"))
    _fails(capsys, ["convert", src, str(tmp_path / "o.mp4"), "--factor", "2"], "song.m4a")


def test_zero_frames(tmp_path: Path, capsys) -> None:
    path = tmp_path / "zero.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    err = _fails(capsys, ["convert", str(path), str(tmp_path / "o.mp4"), "--factor", "2"], "zero.mp4")
    assert not (tmp_path / "o.mp4").exists(), err


def test_one_frame(tmp_path: Path, capsys) -> None:
    src = make_clip(str(tmp_path / "one.mp4"), moving_square_frames(1, 32, 32), [0], Fraction(1, 25))
    _fails(capsys, ["convert", src, str(tmp_path / "o.mp4"), "--factor", "2"], "at least 2")


def test_truncated(tmp_path: Path, capsys) -> None:
    src = make_clip(str(tmp_path / "full.mp4"), moving_square_frames(30, 64, 48), list(range(30)), Fraction(1, 25), faststart=True)
    cut = truncate_file(src, str(tmp_path / "cut.mp4"), 0.6)
    _fails(capsys, ["convert", cut, str(tmp_path / "o.mp4"), "--factor", "2", "--local"], "cut.mp4")
    assert not (tmp_path / "o.mp4").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".slomo")] == []


@pytest.mark.parametrize("factor,expect", [("1", ">= 2"), ("0", ">= 2"), ("100000", "absurd")])
def test_bad_factor(tmp_path: Path, clip: str, capsys, factor: str, expect: str) -> None:
    _fails(capsys, ["convert", clip, str(tmp_path / "o.mp4"), "--factor", factor], expect, code=2)


def test_unwritable_output(tmp_path: Path, clip: str, capsys) -> None:
    _fails(capsys, ["convert", clip, str(tmp_path / "no" / "dir" / "o.mp4"), "--factor", "2"], "does not exist")
    (tmp_path / "file").write_text("x")
    _fails(capsys, ["convert", clip, str(tmp_path / "file" / "o.mp4"), "--factor", "2"], "does not exist")


def test_output_equals_input(clip: str, capsys) -> None:
    _fails(capsys, ["convert", clip, clip, "--factor", "2", "--overwrite"], "overwrite the input")


def test_bad_weights(tmp_path: Path, clip: str, capsys) -> None:
    (tmp_path / "w.pt").write_text("junk")
    _fails(capsys, ["convert", clip, str(tmp_path / "o.mp4"), "--factor", "2", "--model", "superslomo",
                    "--weights", str(tmp_path / "w.pt"), "--local"], "not a readable PyTorch checkpoint")
    # --model superslomo alone runs the best shipped weights (tests/test_shipped_weights.py); weights for dis are a mistake.
    _fails(capsys, ["convert", clip, str(tmp_path / "o.mp4"), "--factor", "2", "--weights", str(tmp_path / "w.pt")],
           "--weights applies to --model superslomo or superslomo-dis only", code=2)


def test_help_explains_every_option() -> None:
    result = subprocess.run([sys.executable, "-m", "flows.cli", "convert", "--help"], capture_output=True, text=True, check=True)
    for option in ("--factor", "--fps", "--mode", "--model", "--weights", "--codec", "--crf", "--audio", "--scene-threshold",
                   "--device", "--dtype", "--overwrite"):
        assert option in result.stdout


def test_entry_point_error_is_one_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("slomo")
    if not exe.exists():
        pytest.skip("console script not installed")
    result = subprocess.run([str(exe), "convert", str(tmp_path / "x.mp4"), str(tmp_path / "y.mp4"), "--factor", "2"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr


def _flow_run_count() -> int:
    import asyncio

    from prefect import get_client

    async def count() -> int:
        async with get_client() as client:
            return len(await client.read_flow_runs())

    return asyncio.run(count())


def _frame_progress_artifact() -> tuple[float, str]:
    """The newest `frame-progress` artifact's percentage and description."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> tuple[float, str]:
        async with get_client() as client:
            (artifact,) = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["frame-progress"])),
                sort=ArtifactSort.UPDATED_DESC, limit=1)
            return float(artifact.data), artifact.description or ""

    return asyncio.run(read())


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_convert_runs_the_flow_by_default(tmp_path: Path, clip: str, capsys) -> None:
    out = tmp_path / "flow.mp4"
    assert main(["convert", clip, str(out), "--factor", "2", "--chunk-frames", "2", "--workers", "2"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "5 -> 9 frames in 2 chunk(s)" in text and "audio none (the source has no audio)" in text
    assert "9/9" in captured.err and IN_PROCESS_NOTE not in captured.err  # the bar, in frames, ends at the total
    progress, description = _frame_progress_artifact()
    assert progress == 100.0 and description.startswith("9/9 output frames (100%)"), description
    assert len(read_frame_timestamps(str(out))) == 9
    assert len(list((tmp_path / ".slomo-work").glob("*/commits/*.json"))) == 2
    # Same command again: the finished job is recognised, nothing is recomputed, and no flow run starts.
    runs = _flow_run_count()
    assert main(["convert", clip, str(out), "--factor", "2", "--chunk-frames", "2", "--workers", "2", "-q"]) == 0
    assert _flow_run_count() == runs
    again = capsys.readouterr().out
    assert "(resumed 2)" in again and "on no worker(s)" in again  # earlier runs' workers are not this run's


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_archive_command(tmp_path: Path, capsys) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for n, name in enumerate(["a.mp4", "sub/b.mp4"]):
        make_clip(str(tmp_path / "in" / name), moving_square_frames(4, 48, 32, seed=n), list(range(4)), Fraction(1, 25))
    argv = ["archive", str(tmp_path / "in"), str(tmp_path / "out"), "--factor", "2", "--suffix", "_x2", "-q"]
    assert main(argv) == 0
    assert "2 converted, 0 already done" in capsys.readouterr().out
    assert len(read_frame_timestamps(str(tmp_path / "out" / "sub" / "b_x2.mp4"))) == 7
    assert main(argv) == 0
    assert "0 converted, 2 already done" in capsys.readouterr().out


@pytest.mark.parametrize("argv,expect", [
    (["convert", "in.mp4", "out.mp4", "--factor", "2", "--bogus"], "unrecognized arguments: --bogus"),
    (["convert", "in.mp4", "out.mp4", "--codec", "mpeg2"], "invalid choice: 'mpeg2'"),
    (["convert", "in.mp4"], "required: output"),
])
def test_option_error_is_one_line_without_usage(argv: list[str], expect: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("slomo: error: ") and "\n" not in err and "usage" not in err and expect in err, err


@pytest.mark.parametrize("option,value,expect", [("--workers", "0", "--workers must be >= 1"),
                                                 ("--chunk-seconds", "0", "--chunk-seconds must be > 0"),
                                                 ("--gpus-per-worker", "-1", "--gpus-per-worker must be >= 0")])
def test_bad_run_option_fails_before_any_work(tmp_path: Path, clip: str, capsys, option: str, value: str,
                                              expect: str) -> None:
    _fails(capsys, ["convert", clip, str(tmp_path / "o.mp4"), "--factor", "2", option, value], expect, code=2)


def test_local_run_honours_the_chunk_length(tmp_path: Path, clip: str, capsys) -> None:
    out = tmp_path / "out.mp4"
    assert main(["convert", clip, str(out), "--factor", "2", "--chunk-frames", "2", "-q", "--local"]) == 0
    assert "5 -> 9 frames with dis in 2 chunk(s)" in capsys.readouterr().out
    assert len(read_frame_timestamps(str(out))) == 9


def test_the_services_slomo_starts_send_no_telemetry(clip: str) -> None:
    """In a fresh interpreter: after the CLI ran, Prefect's settings say analytics off and Ray's usage stats off."""
    code = ("import os; from flows.cli import main; main(['probe', %r]);"
            "from prefect.settings import get_current_settings;"
            "print(get_current_settings().server.analytics_enabled, os.environ['RAY_USAGE_STATS_ENABLED'])" % clip)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "RAY_USAGE_STATS_ENABLED")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False 0"


def _clip_with_garbage_audio(path: Path) -> str:
    """A real video stream beside an AAC stream whose packets are noise: it demuxes, but never decodes."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        for i, image in enumerate(moving_square_frames(5, 32, 32)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        for i in range(20):
            packet = av.Packet(rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
            packet.stream, packet.pts, packet.dts, packet.time_base = audio, i * 1024, i * 1024, Fraction(1, 48000)
            out.mux(packet)
        out.mux(video.encode())
    return str(path)


@pytest.mark.usefixtures("ray_session", "prefect_harness")
@pytest.mark.parametrize("local", [False, True])
def test_undecodable_audio_fails_stretch_before_any_interpolation(tmp_path: Path, capsys, local: bool) -> None:
    clip = _clip_with_garbage_audio(tmp_path / "noise.mkv")
    runs = _flow_run_count()
    code = main(["convert", clip, str(tmp_path / "out.mp4"), "--factor", "2", "--audio", "stretch", "-q"]
                + (["--local"] if local else []))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "audio cannot be decoded for --audio stretch" in err[0], err
    assert _flow_run_count() == runs and not (tmp_path / "out.mp4").exists()
    assert main(["convert", clip, str(tmp_path / "out.mp4"), "--factor", "2", "--local", "-q"]) == 0  # audio dropped


def _clip_with_audio_that_breaks_later(path: Path) -> str:
    """Real AAC for its first 8 frames (so the pre-flight decode check passes), then noise: stitching fails."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = out.add_stream("aac", rate=48000, layout="stereo")
        for i, image in enumerate(moving_square_frames(5, 32, 32)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        for i in range(8):
            sound = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            sound.sample_rate, sound.pts, sound.time_base = 48000, i * 1024, Fraction(1, 48000)
            out.mux(audio.encode(sound))
        for i in range(10, 40):
            packet = av.Packet(rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
            packet.stream, packet.pts, packet.dts, packet.time_base = audio, i * 1024, i * 1024, Fraction(1, 48000)
            out.mux(packet)
        out.mux(video.encode())
    return str(path)


def test_stitch_errors_name_the_users_files_not_scratch_copies(tmp_path: Path, capsys) -> None:
    clip = _clip_with_audio_that_breaks_later(tmp_path / "late-noise.mkv")
    out = tmp_path / "out.mkv"
    assert main(["convert", clip, str(out), "--factor", "2", "--audio", "stretch", "--local", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"slomo: error: {clip}: cannot process audio"), err
    assert "slomo-stitch" not in err[0] and not out.exists()


def _same_frames(a: Path, b: Path) -> bool:
    left, right = list(iter_frames(str(a))), list(iter_frames(str(b)))
    return len(left) == len(right) and all(x.pts == y.pts and (x.image == y.image).all() for x, y in zip(left, right))


@pytest.mark.usefixtures("prefect_harness")
def test_default_convert_without_cluster_runs_in_process_and_keeps_resumable_job_state(
        tmp_path: Path, clip: str, capsys) -> None:
    out = tmp_path / "out.mp4"
    argv = ["convert", clip, str(out), "--factor", "2", "--chunk-frames", "2"]
    runs = _flow_run_count()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert IN_PROCESS_NOTE in captured.err.splitlines() and "9/9" in captured.err  # one line, and a bar of frames
    assert "5 -> 9 frames in 2 chunk(s) in this process" in captured.out
    assert _flow_run_count() == runs
    assert main(["convert", clip, str(tmp_path / "local.mp4"), "--factor", "2", "--chunk-frames", "2", "--local", "-q"]) == 0
    assert _same_frames(out, tmp_path / "local.mp4")
    # The job state is a flow run's: lose the output, its DONE and one commit, and the run redoes one chunk.
    (job,) = (tmp_path / ".slomo-work").iterdir()
    for path in (out, job / "DONE.json", job / "commits" / "chunk-00001.json"):
        path.unlink()
    assert main(argv + ["-q"]) == 0
    captured = capsys.readouterr()
    assert "in this process" in captured.out and "(resumed 1)" in captured.out and captured.err == ""
    assert _same_frames(out, tmp_path / "local.mp4")


@pytest.mark.parametrize("options,in_process", [
    ([], True), (["--workers", "1"], True), (["--flow"], False), (["--workers", "2"], False),
    (["--ray-address", "auto"], False), (["--gpus-per-worker", "1"], False),
    (["--s3-endpoint", "http://127.0.0.1:9"], False), (["--work-dir", "s3://bucket/work"], False),
])
def test_only_a_job_that_asks_for_no_cluster_runs_in_process(options: list[str], in_process: bool) -> None:
    args = build_parser().parse_args(["convert", "in.mp4", "out.mp4", "--factor", "2", *options])
    assert runs_in_process(args, settings_from_args(args), storage_options(args)) is in_process
    remote = build_parser().parse_args(["convert", "in.mp4", "s3://bucket/out.mp4", "--factor", "2", *options])
    assert not runs_in_process(remote, settings_from_args(remote), storage_options(remote))


def test_flow_and_local_exclude_each_other(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "in.mp4", "out.mp4", "--factor", "2", "--flow", "--local"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_a_dis_conversion_in_process_loads_neither_torch_nor_pandas(tmp_path: Path, clip: str) -> None:
    """The weight-free default's whole conversion (plan, manifest, chunk, status rows, stitch) runs without
    the network's stack: torch and pandas were 1.4 s of a short command's start-up on 2 cores."""
    argv = ["convert", clip, str(tmp_path / "out.mp4"), "--factor", "2", "--model", "dis", "-q"]
    code = ("import sys; from flows.cli import main; code = main(%r);"
            "print(code, sorted(m for m in ('torch', 'pandas', 'prefect', 'ray') if m in sys.modules))" % argv)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout
    assert "in this process" in result.stdout and len(read_frame_timestamps(str(tmp_path / "out.mp4"))) > 0


def test_a_finished_job_returns_without_loading_torch_opencv_pyav_prefect_or_ray(tmp_path: Path, clip: str) -> None:
    argv = ["convert", clip, str(tmp_path / "out.mp4"), "--factor", "2", "-q"]
    assert main(argv) == 0
    code = ("import sys; from flows.cli import main; code = main(%r);"
            "print(code, sorted(m for m in ('torch', 'cv2', 'av', 'prefect', 'ray') if m in sys.modules))" % argv)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout
    assert "(resumed 1)" in result.stdout
