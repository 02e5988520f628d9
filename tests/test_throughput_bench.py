"""Stage timing in the conversion path, and bench/throughput.py's two modes doing the same work."""

from __future__ import annotations

import argparse
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np

from bench import throughput
from bench.quality import psnr
from slomo_core.convert import ConvertOptions, convert_locally
from slomo_core.interp.base import PairRequest
from slomo_core.interp.dis import DISInterpolator
from slomo_core.stage_clock import StageClock
from slomo_core.timestamps import RateSpec
from slomo_core.video.decode import iter_frames
from tests.clips import cfr_pts, make_clip, moving_square_frames


def test_stage_clock_sums_across_threads() -> None:
    clock = StageClock()

    def work() -> None:
        for _ in range(50):
            clock.add("model", 0.01)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.calls()["model"] == 200
    assert abs(clock.seconds()["model"] - 2.0) < 1e-9
    assert list(clock.timed_iter("decode", iter([1, 2, 3]))) == [1, 2, 3]
    assert clock.calls()["decode"] == 4  # three items and the end


def test_conversion_reports_every_stage(tmp_path: Path) -> None:
    source = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(9, 64, 48), cfr_pts(9), Fraction(1, 25))
    clock = StageClock()
    options = ConvertOptions(spec=RateSpec("slowmo", factor=3), batch_pairs=4)
    report = convert_locally(source, str(tmp_path / "out.mp4"), DISInterpolator(), options, clock=clock)
    seconds, calls = clock.seconds(), clock.calls()
    assert {"plan", "decode", "scene", "model", "encode", "upload", "stitch"} <= set(seconds)
    assert calls["model"] == 2  # 8 pairs in batches of 4
    assert calls["decode"] == 10  # 9 frames and the end of the stream
    assert report.output_frames == 25


def _args(**overrides) -> argparse.Namespace:
    args = throughput.parse(["--factor", "3", "--threads", "2"])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_old_way_does_the_same_work_as_slomo(tmp_path: Path) -> None:
    """Same frames, same count, same weights: the baseline differs in how, not in what."""
    source = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(5, 64, 48, dx=3), cfr_pts(5), Fraction(1, 25),
                       audio=True)
    args = _args(channels_last=False)  # layouts can differ in the last bit; the work is what is compared
    fast = throughput.run_slomo(args, source, str(tmp_path / "fast.mp4"))
    old = throughput.run_old_way(args, source, str(tmp_path / "old.mp4"))
    assert fast["frames"] == old["frames"] == 13
    assert old["stages"]["png"] > 0 and "png" not in fast["stages"]
    assert old["stages"]["model"] > 0 and fast["stages"]["model"] > 0
    # > 45 dB before originals passed through as YUV; now slomo's original frames are the source's own
    # samples while the old way rounds them through RGB PNGs, so the two differ more, slomo being the closer.
    assert throughput.agreement_db(str(tmp_path / "fast.mp4"), str(tmp_path / "old.mp4")) > 42
    source_frames = [f.image for f in iter_frames(source)]
    fast_frames = [f.image for f in iter_frames(str(tmp_path / "fast.mp4"))]
    old_frames = [f.image for f in iter_frames(str(tmp_path / "old.mp4"))]
    originals = range(0, 13, 3)
    fast_db = np.mean([psnr(source_frames[i // 3], fast_frames[i]) for i in originals])
    old_db = np.mean([psnr(source_frames[i // 3], old_frames[i]) for i in originals])
    assert fast_db > old_db
    frames = [f.image for f in iter_frames(str(tmp_path / "old.mp4"))]
    assert len(frames) == 13 and not np.array_equal(frames[0], frames[3])


def test_frames_and_size_cut_the_clip_once_for_every_run(tmp_path: Path) -> None:
    source = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(9, 64, 48), cfr_pts(9), Fraction(1, 25))
    args = throughput.parse(["--clip", source, "--frames", "5", "--size", "32x24"])
    assert "--frames" not in args.passthrough and "--size" not in args.passthrough
    throughput.prepare_clip(args, str(tmp_path))
    prepared = args.passthrough[args.passthrough.index("--clip") + 1]
    frames = [f.image for f in iter_frames(prepared)]
    assert prepared != source and len(frames) == 5 and frames[0].shape == (24, 32, 3)


def test_depth_copies_for_the_10_bit_row(tmp_path: Path) -> None:
    """``--depths 8,10`` converts copies made the same way at each depth; the 10-bit one really is 10-bit."""
    from slomo_core.video.probe import probe

    source = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(3, 64, 48), cfr_pts(3), Fraction(1, 25))
    for depth, pix_fmt in ((8, "yuv420p"), (10, "yuv420p10le")):
        copy = throughput.depth_copy(source, depth, str(tmp_path))
        assert probe(copy).colour.pix_fmt == pix_fmt
        assert len(list(iter_frames(copy))) == 3


def test_minterpolate_row_does_the_same_job_as_slomo(tmp_path: Path) -> None:
    """The minterpolate row converts the same clip to the same rate, frame count and audio, and interpolates
    (the in-betweens are new pictures, the originals come back, one pair fewer); the table prints the speed ratio to it."""
    from slomo_core.video.probe import probe

    source = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(9, 64, 48, dx=3), cfr_pts(9), Fraction(1, 25),
                       audio=True)
    args = throughput.parse(["--mode", "fps", "--factor", "2", "--model", "dis", "--minterpolate"])
    results = {mode: throughput.MODES[mode](args, source, str(tmp_path / f"{mode}.mp4")) for mode in ("slomo", "minterpolate")}
    mi, slomo = probe(str(tmp_path / "minterpolate.mp4")), probe(str(tmp_path / "slomo.mp4"))
    assert mi.average_rate == slomo.average_rate == 50
    assert mi.audio is not None and slomo.audio is not None  # copied, as slomo does in fps mode
    # minterpolate emits nothing for the last input pair: (N - 2) * F + 1 frames against slomo's (N - 1) * F + 1
    assert results["slomo"]["frames"] == 17 and results["minterpolate"]["frames"] == 15
    source_frames = [f.image for f in iter_frames(source)]
    frames = [f.image for f in iter_frames(str(tmp_path / "minterpolate.mp4"))]
    assert len(frames) == results["minterpolate"]["frames"]
    assert min(psnr(source_frames[k], frames[2 * k]) for k in range(len(frames) // 2)) > 30
    for k in range(len(frames) // 2 - 1):  # the middle frame is neither neighbour
        assert not np.array_equal(frames[2 * k + 1], frames[2 * k]) and not np.array_equal(frames[2 * k + 1], frames[2 * k + 2])
    for result in results.values():
        result["peak_rss_mb"] = 0.0
    printed = throughput.table({mode: [result] for mode, result in results.items()})
    assert "vs minterpolate" in printed.splitlines()[0] and "| minterpolate | 1 |" in printed


def test_slowmo_minterpolate_plays_the_new_frames_at_the_source_rate(tmp_path: Path) -> None:
    from slomo_core.video.probe import probe

    source = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(5, 64, 48, dx=3), cfr_pts(5), Fraction(1, 25))
    args = throughput.parse(["--factor", "3", "--model", "dis", "--minterpolate", "--audio", "drop"])
    result = throughput.run_minterpolate(args, source, str(tmp_path / "out.mp4"))
    assert probe(str(tmp_path / "out.mp4")).average_rate == 25
    assert result["frames"] == 10 and result["stages"]["model"] > 0  # (5 - 2) * 3 + 1: no last pair, as above


def test_one_run_prints_every_row_with_the_ratios(tmp_path: Path, capsys) -> None:
    """The command itself (default and --local, start-up counted), the library, the old way and minterpolate,
    side by side in one run of bench/throughput.py, with the ratios the targets are stated in."""
    import torch

    from slomo_core.model.checkpoint import save_superslomo
    from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig

    source = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(4, 64, 48, dx=3), cfr_pts(4), Fraction(1, 25))
    torch.manual_seed(0)
    weights = str(tmp_path / "tiny.pt")
    save_superslomo(SuperSloMo(SuperSloMoConfig(widths=(4, 8, 8, 8, 8, 8))), weights)
    assert throughput.main(["--clip", source, "--weights", weights, "--mode", "fps", "--factor", "2", "--threads", "1",
                            "--baseline", "--minterpolate", "--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in printed.splitlines() if line.startswith("| ")}
    assert set(rows) == {"mode", "slomo default", "slomo --local", "slomo", "old-way", "minterpolate"}
    head = [cell.strip() for cell in rows["mode"]]
    assert "vs old-way" in head and "vs minterpolate" in head and "outside job s" in head
    cells = {mode: dict(zip(head, (c.strip() for c in cells))) for mode, cells in rows.items() if mode != "mode"}
    assert cells["slomo default"]["output frames"] == cells["slomo --local"]["output frames"] == cells["slomo"]["output frames"] == "7"
    assert float(cells["slomo default"]["model s"]) > 0  # from the job's commit markers
    assert cells["slomo --local"]["model s"] == "-" and float(cells["slomo --local"]["outside job s"]) > 0
    assert cells["old-way"]["vs old-way"] == "1.00x" and cells["minterpolate"]["vs minterpolate"] == "1.00x"
    assert "slomo default and slomo --local outputs: the same frames and timestamps" in printed
    for ratio in ("slomo default / slomo --local wall time: ", "slomo default / minterpolate wall time: ",
                  "old-way / slomo default wall time: "):
        assert ratio in printed


def test_cli_rows_only_where_the_command_can_run_the_model() -> None:
    assert throughput.parse(["--model", "dis"]).cli and not throughput.parse([]).cli  # random weights: library only
    assert not throughput.parse(["--model", "dis", "--no-cli"]).cli
    assert throughput.job_seconds("out.mp4: 5 -> 9 frames in 2 chunk(s) in this process in 3.4 s, audio copy") == 3.4
    assert throughput.job_seconds("out.mp4: 5 -> 9 frames with dis in 1 chunk(s), 12.0 s (0.8 frames/s)") == 12.0


def test_interpolator_bench_host_float_path_runs_and_gives_the_engines_frames(capsys) -> None:
    """bench.interpolators' host-float rows (the GPU script's step 2) run, and differ from the engine only in
    their transfers: frames within one level (float rounding on the host against on the device)."""
    from bench import interpolators

    args = argparse.Namespace(widths="light", device="cpu")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(2)]
    requests = [PairRequest(frames[0], frames[1], (0.25, 0.5))]
    host = interpolators.CONFIGS["superslomo fp32 channels_last host-float path"](args).interpolate(requests)
    engine = interpolators.CONFIGS["superslomo fp32 channels_last"](args).interpolate(requests)
    assert [len(pair) for pair in host] == [2]
    assert all(np.abs(a.astype(int) - b.astype(int)).max() <= 1 for a, b in zip(host[0], engine[0], strict=True))
    assert interpolators.main(["--size", "48x32", "--factor", "2", "--batch-pairs", "1", "--repeats", "1",
                               "--widths", "light", "--device", "cpu", "--only",
                               "superslomo fp32 channels_last host-float path"]) == 0
    assert "| superslomo fp32 channels_last host-float path |" in capsys.readouterr().out
