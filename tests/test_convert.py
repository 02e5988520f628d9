"""End to end on one machine: real PyAV decode -> interpolate -> encode -> mux, checked frame by frame."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from slomo_core.convert import ConvertOptions, convert_locally
from slomo_core.errors import ConfigError, InputError, OutputError
from slomo_core.interp.dis import DISInterpolator
from slomo_core.timestamps import RateSpec
from slomo_core.video.decode import iter_frames
from slomo_core.video.encode import EncoderSettings
from slomo_core.video.probe import probe, read_frame_timestamps

from clips import make_clip, moving_square_frames

LOSSLESS = EncoderSettings(codec="ffv1")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _decode(path: Path) -> tuple[list[np.ndarray], list[int]]:
    frames = list(iter_frames(str(path)))
    return [f.image for f in frames], [f.pts for f in frames]


@pytest.fixture
def dis() -> DISInterpolator:
    return DISInterpolator()


def test_known_motion_beats_blend(tmp_path: Path, dis: DISInterpolator) -> None:
    # Ground truth at 2x the rate; the input keeps every other frame, slomo puts the rest back.
    truth = moving_square_frames(17, 96, 64, dx=3, dy=1, size=16, seed=3)
    src = make_clip(str(tmp_path / "in.mp4"), truth[::2], list(range(9)), Fraction(1, 12), codec="ffv1")
    out = tmp_path / "out.mp4"
    report = convert_locally(src, str(out), dis, ConvertOptions(RateSpec("fps", factor=2), encoder=LOSSLESS))
    frames, pts = _decode(out)
    assert report.output_frames == len(frames) == 17
    assert pts == list(range(17)) and probe(str(out)).time_base == Fraction(1, 24)
    inputs, _ = _decode(Path(src))
    ours = [psnr(frames[k], truth[k]) for k in range(1, 17, 2)]
    blend = [psnr(((inputs[k // 2].astype(int) + inputs[k // 2 + 1]) // 2).astype(np.uint8), truth[k]) for k in range(1, 17, 2)]
    assert np.mean(ours) > np.mean(blend) + 3.0, (ours, blend)
    # Original frames pass through (up to the lossless codec's colour round trip).
    assert all(np.abs(frames[2 * i].astype(int) - inputs[i]).max() <= 3 for i in range(9))


@pytest.mark.parametrize("factor", [2, 4])
def test_slowmo_counts_and_timestamps_cfr(tmp_path: Path, dis: DISInterpolator, factor: int) -> None:
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(6, 64, 48), [i * 512 for i in range(6)], Fraction(1, 12800))
    out = tmp_path / "slow.mp4"
    convert_locally(src, str(out), dis, ConvertOptions(RateSpec("slowmo", factor=factor)))
    pts = read_frame_timestamps(str(out))
    assert len(pts) == (6 - 1) * factor + 1
    assert pts == [k * 512 for k in range(len(pts))]  # same frame rate, factor x longer
    info = probe(str(out))
    assert info.time_base == Fraction(1, 12800) and info.average_rate == 25


def test_ntsc_fps_mode_exact(tmp_path: Path, dis: DISInterpolator) -> None:
    src = make_clip(str(tmp_path / "ntsc.mp4"), moving_square_frames(5, 64, 48), [i * 1001 for i in range(5)], Fraction(1, 30000))
    out = tmp_path / "ntsc60.mp4"
    convert_locally(src, str(out), dis, ConvertOptions(RateSpec("fps", factor=2)))
    info, pts = probe(str(out)), read_frame_timestamps(str(out))
    seconds = [p * info.time_base for p in pts]
    assert seconds == [Fraction(k * 1001, 60000) for k in range(9)]


def test_vfr_input_keeps_its_rhythm(tmp_path: Path, dis: DISInterpolator) -> None:
    in_pts = [0, 3, 4, 9, 10, 20]
    src = make_clip(str(tmp_path / "vfr.mp4"), moving_square_frames(6, 64, 48), in_pts, Fraction(1, 100))
    out = tmp_path / "vfr2.mp4"
    convert_locally(src, str(out), dis, ConvertOptions(RateSpec("slowmo", factor=2)))
    expected = []
    for i in range(5):
        expected += [2 * in_pts[i], 2 * in_pts[i] + (in_pts[i + 1] - in_pts[i])]
    assert read_frame_timestamps(str(out)) == expected + [2 * in_pts[-1]]


def test_target_rate_24_to_60(tmp_path: Path, dis: DISInterpolator) -> None:
    src = make_clip(str(tmp_path / "film.mp4"), moving_square_frames(5, 64, 48), list(range(5)), Fraction(1, 24))
    out = tmp_path / "film60.mp4"
    report = convert_locally(src, str(out), dis, ConvertOptions(RateSpec("fps", target_fps=Fraction(60))))
    info, pts = probe(str(out)), read_frame_timestamps(str(out))
    assert [p * info.time_base for p in pts] == [Fraction(j, 60) for j in range(11)]
    assert report.output_frames == 11


def test_scene_cut_repeats_frame(tmp_path: Path, dis: DISInterpolator) -> None:
    a = moving_square_frames(3, 96, 64, seed=1)
    rng = np.random.default_rng(9)
    other = np.clip(rng.normal(60, 40, (64, 96, 3)), 0, 255).astype(np.uint8)
    b = [np.ascontiguousarray(np.roll(other, 2 * k, axis=1)) for k in range(3)]
    frames = a + b
    src = make_clip(str(tmp_path / "cut.mp4"), frames, list(range(6)), Fraction(1, 25), codec="ffv1")
    out = tmp_path / "cut4.mp4"
    report = convert_locally(src, str(out), dis, ConvertOptions(RateSpec("slowmo", factor=4), encoder=LOSSLESS))
    assert report.scene_cuts == (2,)
    got, _ = _decode(out)
    for k in range(8, 12):  # pair 2 = the cut: frame 2 shown four times
        assert np.array_equal(got[k], got[8])
    assert not np.array_equal(got[4], got[5])  # a normal pair still interpolates
    # Off: the cut pair is morphed instead.
    out2 = tmp_path / "nocut.mp4"
    report2 = convert_locally(src, str(out2), dis, ConvertOptions(RateSpec("slowmo", factor=4), encoder=LOSSLESS, scene_threshold=None))
    assert report2.scene_cuts == ()
    assert not np.array_equal(_decode(out2)[0][9], got[8])


def test_rotation_and_odd_size_survive(tmp_path: Path, dis: DISInterpolator) -> None:
    src = make_clip(str(tmp_path / "rot.mp4"), moving_square_frames(4, 65, 49), list(range(4)), Fraction(1, 25), rotation=90)
    out = tmp_path / "rot2.mp4"
    convert_locally(src, str(out), dis, ConvertOptions(RateSpec("slowmo", factor=2)))
    info = probe(str(out))
    assert (info.width, info.height, info.rotation) == (65, 49, 90)


def _audio_seconds(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return 0.0
        return sum(f.samples for f in container.decode(audio=0)) / container.streams.audio[0].rate


@pytest.mark.parametrize(
    "spec,mode,ratio",
    [(RateSpec("fps", factor=2), None, 1.0), (RateSpec("slowmo", factor=3), "stretch", 3.0), (RateSpec("slowmo", factor=2), None, 0.0)],
)
def test_audio_modes(tmp_path: Path, dis: DISInterpolator, spec: RateSpec, mode: str | None, ratio: float) -> None:
    src = make_clip(str(tmp_path / "a.mp4"), moving_square_frames(13, 64, 48), list(range(13)), Fraction(1, 12), audio=True)
    out = tmp_path / "a_out.mp4"
    report = convert_locally(src, str(out), dis, ConvertOptions(spec, audio_mode=mode))
    assert report.audio_mode == (mode or ("copy" if spec.mode == "fps" else "drop"))
    source_seconds = _audio_seconds(Path(src))
    assert source_seconds > 0.9
    assert _audio_seconds(out) == pytest.approx(ratio * source_seconds, rel=0.06, abs=0.01)


def test_network_path_end_to_end(tmp_path: Path) -> None:
    import torch

    from slomo_core.interp.network import SuperSloMoInterpolator
    from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig

    torch.manual_seed(0)
    net = SuperSloMoInterpolator(SuperSloMo(SuperSloMoConfig(widths=(4, 8, 8, 8, 8, 8))))
    src = make_clip(str(tmp_path / "n.mp4"), moving_square_frames(5, 70, 40), list(range(5)), Fraction(1, 25))
    out = tmp_path / "n3.mp4"
    report = convert_locally(src, str(out), net, ConvertOptions(RateSpec("slowmo", factor=3), batch_pairs=3))
    assert report.interpolator == "superslomo" and len(read_frame_timestamps(str(out))) == 13


# ------------------------------------------------------------------ failures leave nothing behind


def _assert_clean(folder: Path, keep: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == keep


def test_one_frame_input_rejected(tmp_path: Path, dis: DISInterpolator) -> None:
    src = make_clip(str(tmp_path / "one.mp4"), moving_square_frames(1, 32, 32), [0], Fraction(1, 25))
    with pytest.raises(InputError, match="1 video frame"):
        convert_locally(src, str(tmp_path / "o.mp4"), dis, ConvertOptions(RateSpec("slowmo", factor=2)))
    _assert_clean(tmp_path, {"one.mp4"})


def test_existing_output_needs_overwrite(tmp_path: Path, dis: DISInterpolator) -> None:
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(3, 32, 32), [0, 1, 2], Fraction(1, 25))
    (tmp_path / "o.mp4").write_bytes(b"keep me")
    with pytest.raises(OutputError, match="already exists"):
        convert_locally(src, str(tmp_path / "o.mp4"), dis, ConvertOptions(RateSpec("slowmo", factor=2)))
    assert (tmp_path / "o.mp4").read_bytes() == b"keep me"
    convert_locally(src, str(tmp_path / "o.mp4"), dis, ConvertOptions(RateSpec("slowmo", factor=2), overwrite=True))
    assert len(read_frame_timestamps(str(tmp_path / "o.mp4"))) == 5


def test_failure_midway_leaves_no_output(tmp_path: Path) -> None:
    class Exploding:
        name = "exploding"

        def __init__(self) -> None:
            self.calls = 0

        def interpolate(self, requests):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("device lost")
            return [[r.frame0 for _ in r.times] for r in requests]

    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(9, 32, 32), list(range(9)), Fraction(1, 25))
    with pytest.raises(RuntimeError, match="device lost"):
        convert_locally(src, str(tmp_path / "o.mp4"), Exploding(), ConvertOptions(RateSpec("slowmo", factor=2), batch_pairs=2))
    _assert_clean(tmp_path, {"in.mp4"})


@pytest.mark.parametrize(
    "options",
    [
        ConvertOptions(RateSpec("slowmo", factor=1)),
        ConvertOptions(RateSpec("slowmo", factor=500)),
        ConvertOptions(RateSpec("slowmo", factor=2), audio_mode="copy"),
        ConvertOptions(RateSpec("fps", factor=2), audio_mode="stretch"),
        ConvertOptions(RateSpec("fps", factor=2), batch_pairs=0),
        ConvertOptions(RateSpec("fps", factor=2), scene_threshold=1.5),
        ConvertOptions(RateSpec("fps", factor=2), encoder=EncoderSettings(codec="mpeg2")),
    ],
)
def test_bad_options_rejected_before_work(tmp_path: Path, dis: DISInterpolator, options: ConvertOptions) -> None:
    with pytest.raises(ConfigError):
        convert_locally(str(tmp_path / "missing.mp4"), str(tmp_path / "o.mp4"), dis, options)


@pytest.mark.slow
def test_bikes_real_footage_factor4(tmp_path: Path, footage: Path, dis: DISInterpolator) -> None:
    out = tmp_path / "bikes_x4.mp4"
    report = convert_locally(str(footage / "bikes.mp4"), str(out), dis, ConvertOptions(RateSpec("slowmo", factor=4)))
    pts = read_frame_timestamps(str(out))
    assert len(pts) == report.output_frames == 249 * 4 + 1
    assert pts == [k * 512 for k in range(997)]
    assert len(report.scene_cuts) >= 3
