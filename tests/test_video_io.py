"""Video I/O: probe, decode, encode, stitch. Real PyAV encode/decode on tiny synthetic clips."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest

from slomo_core.errors import ConfigError, InputError, OutputError
from slomo_core.video.audio import AUDIO_MODES, atempo_chain
from slomo_core.video.decode import iter_frames
from slomo_core.video.encode import CODECS, EncoderSettings, VideoEncoder
from slomo_core.video.mux import decode_order_dts, finalize
from slomo_core.video.probe import probe, read_frame_timestamps

try:  # tests/ is not a package; keep working if it becomes one
    from clips import cfr_pts, make_audio_only, make_clip, moving_square_frames, truncate_file
except ImportError:  # pragma: no cover
    from tests.clips import cfr_pts, make_audio_only, make_clip, moving_square_frames, truncate_file

TB25 = Fraction(1, 25)
NTSC_TB = Fraction(1, 30000)
VFR_PTS = [0, 3, 4, 9, 10, 11, 20, 22, 30, 31, 45, 46]  # in 1/100 s


# ---------------------------------------------------------------- helpers / fixtures


def packet_order(path: str) -> list[tuple[int, int | None]]:
    with av.open(path) as container:
        return [(p.pts, p.dts) for p in container.demux(video=0) if p.size]


def has_reordering(path: str) -> bool:
    pts = [p for p, _ in packet_order(path)]
    return pts != sorted(pts)


def audio_seconds(path: str) -> float:
    """Decoded audio duration (what a player plays)."""
    with av.open(path) as container:
        if not container.streams.audio:
            return 0.0
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate


def audio_samples(path: str) -> tuple[np.ndarray, int]:
    with av.open(path) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray()[0] for frame in container.decode(stream)]
        return np.concatenate(chunks), stream.codec_context.sample_rate


def video_seconds(path: str) -> float:
    info = probe(path)
    ts = read_frame_timestamps(path)
    step = ts[-1] - ts[-2] if len(ts) > 1 else 1
    return float((ts[-1] - ts[0] + step) * info.time_base)


def encode(path: str, frames, pts, time_base, settings=None, **kwargs) -> str:
    h, w = frames[0].shape[:2]
    with VideoEncoder(path, w, h, time_base, settings or EncoderSettings(preset="veryfast"), **kwargs) as enc:
        for img, p in zip(frames, pts):
            enc.write(img, p)
    assert enc.frames_written == len(frames)
    return path


@pytest.fixture
def clip(tmp_path) -> str:
    """64x48, 10 frames, 25 fps, h264 with B-frames, AAC audio, rotated 90 degrees."""
    return make_clip(
        str(tmp_path / "clip.mp4"), moving_square_frames(10, 64, 48), cfr_pts(10), TB25, audio=True, rotation=90
    )


# ---------------------------------------------------------------- probe


def test_probe_synthetic(clip):
    info = probe(clip)
    assert (info.path, info.codec, info.width, info.height, info.pix_fmt) == (clip, "h264", 64, 48, "yuv420p")
    assert "mp4" in info.container
    assert info.time_base == TB25 and info.average_rate == 25 and info.frame_count == 10
    assert info.duration_seconds == pytest.approx(0.4)
    assert info.rotation == 90
    assert info.size_bytes == os.path.getsize(clip)
    assert info.audio is not None
    assert (info.audio.codec, info.audio.sample_rate, info.audio.channels) == ("aac", 48000, 2)
    assert info.audio.time_base == Fraction(1, 48000)


@pytest.mark.parametrize(
    "name, size, rate, frames, has_audio",
    [
        ("bikes.mp4", (640, 272), Fraction(25), 250, False),
        ("bigbuckbunny.mp4", (1280, 720), Fraction(25), 132, True),
        ("carphone_pristine.mp4", (176, 144), Fraction(30000, 1001), 120, False),
    ],
)
def test_probe_real_footage(footage, name, size, rate, frames, has_audio):
    info = probe(str(footage / name))
    assert (info.width, info.height) == size
    assert info.codec == "h264" and info.rotation == 0
    assert info.average_rate == rate and info.frame_count == frames
    assert (info.audio is not None) == has_audio
    assert len(read_frame_timestamps(str(footage / name))) == frames


def _text_file(tmp_path) -> str:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    return str(path)


def _zero_file(tmp_path) -> str:
    path = tmp_path / "empty.mp4"
    path.touch()
    return str(path)


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda tmp: str(tmp / "missing.mp4"),
        _text_file,
        _zero_file,
        lambda tmp: make_audio_only(str(tmp / "voice.m4a"), seconds=0.2),
        lambda tmp: str(tmp),  # a directory
    ],
    ids=["missing", "text", "zero-bytes", "audio-only", "directory"],
)
def test_unusable_inputs_raise_input_error_naming_the_file(tmp_path, make_bad):
    bad = make_bad(tmp_path)
    for func in (probe, read_frame_timestamps, lambda p: list(iter_frames(p))):
        with pytest.raises(InputError) as err:
            func(bad)
        message = str(err.value)
        assert bad in message and "\n" not in message


# ---------------------------------------------------------------- decode


TIMING_CASES = {
    "cfr-25": (TB25, cfr_pts(12)),
    "ntsc": (NTSC_TB, cfr_pts(12, step=1001)),
    "ntsc-tb/4": (Fraction(1, 120000), cfr_pts(12, step=4004)),
    "vfr": (Fraction(1, 100), VFR_PTS),
    "late-start": (NTSC_TB, cfr_pts(12, step=1001, start=5000)),
}


@pytest.mark.parametrize("case", list(TIMING_CASES))
def test_decode_gives_exact_pts(tmp_path, case):
    time_base, pts = TIMING_CASES[case]
    frames = moving_square_frames(len(pts), 64, 48)
    path = make_clip(str(tmp_path / "in.mp4"), frames, pts, time_base, bframes=True)
    assert has_reordering(path)  # B-frames really are there
    assert read_frame_timestamps(path) == pts
    decoded = list(iter_frames(path))
    assert [f.pts for f in decoded] == pts
    assert [f.index for f in decoded] == list(range(len(pts)))
    image = decoded[0].image
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8 and image.flags.c_contiguous
    assert np.abs(image.astype(int) - frames[0]).mean() < 6  # it is the right picture


def test_decode_real_ntsc_footage(footage):
    frames = list(iter_frames(str(footage / "carphone_pristine.mp4")))
    assert len(frames) == 120
    assert {b.pts - a.pts for a, b in zip(frames, frames[1:])} == {1001}


OPEN_GOP = {"x264-params": "keyint=8:min-keyint=8:scenecut=0:open-gop=1:bframes=3:b-pyramid=none"}


@pytest.mark.parametrize(
    "ext, options", [(".mp4", None), (".mkv", None), (".mp4", OPEN_GOP)], ids=["mp4", "mkv", "mp4-open-gop"]
)
def test_range_decode_matches_full_decode(tmp_path, ext, options):
    """Chunks decode the same pixels as a full decode, whether or not they start on a keyframe.

    With open GOPs a keyframe's dts precedes the pts of B-frames shown before it, so a plain seek
    lands after them; iter_frames must step back to the previous keyframe.
    """
    n = 16
    path = make_clip(
        str(tmp_path / f"gop{ext}"), moving_square_frames(n, 64, 48), cfr_pts(n), TB25, gop_size=4, options=options
    )
    with av.open(path) as container:
        keyframes = [p.is_keyframe for p in container.demux(video=0) if p.size]
    assert sum(keyframes) >= 2  # small GOP: most starts are not on a keyframe
    full = list(iter_frames(path))
    assert [f.pts for f in iter_frames(path, threads=1)] == [f.pts for f in full]
    timestamps = read_frame_timestamps(path)
    for start in range(n):
        stop = min(n, start + 3)
        part = list(iter_frames(path, start, stop, timestamps=timestamps))
        assert [f.index for f in part] == list(range(start, stop))
        assert [f.pts for f in part] == [f.pts for f in full[start:stop]]
        for got, want in zip(part, full[start:stop]):
            assert np.array_equal(got.image, want.image), (start, got.index)
    tail = list(iter_frames(path, 9))  # open-ended range, timestamps read internally
    assert [f.index for f in tail] == list(range(9, n))


def test_range_decode_real_footage(footage):
    path = str(footage / "bikes.mp4")
    full = list(iter_frames(path, 0, 40))
    part = list(iter_frames(path, 29, 40))
    assert [f.pts for f in part] == [f.pts for f in full[29:40]]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(part, full[29:40]))


def test_range_errors(tmp_path):
    path = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(5, 64, 48), cfr_pts(5), TB25)
    with pytest.raises(InputError, match="has 5 frames"):
        list(iter_frames(path, 3, 8))
    with pytest.raises(InputError, match="has 5 frames"):
        list(iter_frames(path, 0, 8))  # the index is read even from frame 0: the range is refused up front
    with pytest.raises(InputError, match="stopped after 5"):
        list(iter_frames(path, 0, 8, timestamps=cfr_pts(8)))  # a caller's index that promises too much
    with pytest.raises(ConfigError):
        list(iter_frames(path, -1))
    with pytest.raises(ConfigError):
        list(iter_frames(path, 3, 2))
    assert list(iter_frames(path, 2, 2)) == []


@pytest.mark.parametrize("faststart", [False, True], ids=["moov-last", "moov-first"])
def test_truncated_file_raises_input_error(tmp_path, faststart):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(24)]
    good = make_clip(str(tmp_path / "good.mp4"), frames, cfr_pts(24), TB25, faststart=faststart)
    cut = truncate_file(good, str(tmp_path / "cut.mp4"), 0.5)
    for func in (read_frame_timestamps, lambda p: list(iter_frames(p))):
        with pytest.raises(InputError) as err:
            func(cut)
        assert cut in str(err.value)


# ---------------------------------------------------------------- encode


@pytest.mark.parametrize("case", list(TIMING_CASES))
@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_encode_keeps_pts_exactly(tmp_path, case, ext):
    time_base, pts = TIMING_CASES[case]
    path = encode(str(tmp_path / f"out{ext}"), moving_square_frames(len(pts), 64, 48), pts, time_base)
    assert has_reordering(path)  # x264 default settings use B-frames: edit list in play
    assert probe(path).time_base == time_base
    assert read_frame_timestamps(path) == pts
    assert [f.pts for f in iter_frames(path)] == pts


def test_encode_mkv_rounds_to_milliseconds_and_refuses_frames_closer_than_one(tmp_path):
    ntsc = encode(str(tmp_path / "ntsc.mkv"), moving_square_frames(3, 64, 48), cfr_pts(3, step=1001), NTSC_TB)
    assert [f.pts for f in iter_frames(ntsc)] == [0, 33, 67]  # 33.366.. ms to the nearest, as FFmpeg does
    with pytest.raises(OutputError, match="0.500 ms apart do not fit the container's 1/1000 s clock"):
        encode(str(tmp_path / "fast.mkv"), moving_square_frames(3, 64, 48), cfr_pts(3), Fraction(1, 2000))
    ok = encode(str(tmp_path / "ok.mkv"), moving_square_frames(4, 64, 48), cfr_pts(4), TB25)
    assert [f.pts for f in iter_frames(ok)] == [0, 40, 80, 120]  # 1/25 is exact in 1/1000


@pytest.mark.parametrize("codec", list(CODECS))
def test_each_codec_round_trips(tmp_path, codec):
    frames = moving_square_frames(6, 64, 48)
    preset = {"h264": "veryfast", "h265": "ultrafast", "av1": "12", "ffv1": None}[codec]
    path = encode(str(tmp_path / "out.mkv"), frames, cfr_pts(6), TB25, EncoderSettings(codec=codec, preset=preset))
    decoded = list(iter_frames(path))
    assert [f.pts for f in decoded] == [0, 40, 80, 120, 160, 200]
    assert decoded[0].image.shape == (48, 64, 3)
    diffs = [np.abs(f.image.astype(int) - src.astype(int)) for f, src in zip(decoded, frames)]
    if codec == "ffv1":
        # lossless codec; only RGB -> YUV 4:4:4 (8-bit, limited range) -> RGB rounding remains
        assert max(d.max() for d in diffs) <= 3
    else:
        assert max(d.mean() for d in diffs) < 10  # lossy, but the same picture (noisy 64x48 texture)


@pytest.mark.parametrize("codec", ["h264", "h265", "av1"])
def test_odd_size_is_kept(tmp_path, codec):
    preset = {"h264": "veryfast", "h265": "ultrafast", "av1": "12"}[codec]
    settings = EncoderSettings(codec, preset=preset)
    path = encode(str(tmp_path / "odd.mp4"), moving_square_frames(4, 65, 49), cfr_pts(4), TB25, settings)
    info = probe(path)
    assert (info.width, info.height) == (65, 49)
    if codec == "h265":
        with av.open(path) as container:
            assert container.streams.video[0].codec_tag == "hvc1"  # plays on Apple devices
    assert info.pix_fmt == ("yuv420p" if codec == "av1" else "yuv444p")
    assert next(iter_frames(path)).image.shape == (49, 65, 3)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_is_kept(tmp_path, rotation):
    path = encode(str(tmp_path / "rot.mp4"), moving_square_frames(3, 64, 48), cfr_pts(3), TB25, rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == (64, 48)  # stored size; players rotate on display


def test_round_trip_does_not_shift_colours(tmp_path, footage):
    """decode -> encode (near-lossless) -> decode gives the same colours on average (no matrix/rounding bias)."""
    source = str(footage / "bikes.mp4")
    frames = list(iter_frames(source, 0, 4))
    info = probe(source)
    out = encode(str(tmp_path / "rt.mp4"), [f.image for f in frames], [f.pts for f in frames], info.time_base,
                 EncoderSettings(crf=4, preset="ultrafast"), frame_rate_hint=info.average_rate)
    back = list(iter_frames(out))
    diff = np.stack([b.image.astype(float) - a.image for a, b in zip(frames, back)])
    assert np.all(np.abs(diff.mean(axis=(0, 1, 2))) < 0.5)  # swscale defaults would give about -1.2
    assert np.abs(diff).mean() < 2


def test_encoder_rejects_bad_use(tmp_path):
    path = str(tmp_path / "out.mp4")
    with VideoEncoder(path, 64, 48, TB25, EncoderSettings(preset="ultrafast")) as enc:
        image = moving_square_frames(1, 64, 48)[0]
        enc.write(image, 5)
        with pytest.raises(OutputError, match="not after"):
            enc.write(image, 5)
        with pytest.raises(ValueError):
            enc.write(image[:, :32], 6)
    with pytest.raises(ConfigError):
        VideoEncoder(str(tmp_path / "out.avi"), 64, 48, TB25, EncoderSettings())
    with pytest.raises(ConfigError):
        VideoEncoder(str(tmp_path / "ffv1.mov"), 64, 48, TB25, EncoderSettings(codec="ffv1"))


@pytest.mark.parametrize(
    "settings",
    [
        EncoderSettings(codec="vp9"),
        EncoderSettings(crf=52),
        EncoderSettings(codec="av1", crf=64),
        EncoderSettings(preset="warp"),
        EncoderSettings(codec="av1", preset="medium"),
        EncoderSettings(pix_fmt="yuv444p", codec="av1"),
        EncoderSettings(threads=-1),
    ],
)
def test_invalid_settings_raise_config_error(settings):
    with pytest.raises(ConfigError):
        settings.validate()


def test_settings_defaults():
    assert EncoderSettings().resolved_crf() == 18 and EncoderSettings().resolved_preset() == "medium"
    assert EncoderSettings("h265").resolved_crf() == 20 and EncoderSettings("av1").resolved_crf() == 30
    assert EncoderSettings("av1").resolved_preset() == "8" and EncoderSettings("ffv1", crf=99).resolved_crf() is None
    assert EncoderSettings().resolve_pix_fmt(64, 48) == "yuv420p"
    assert EncoderSettings().resolve_pix_fmt(65, 48) == "yuv444p"
    assert EncoderSettings("ffv1").resolve_pix_fmt(64, 48) == "yuv444p"
    assert EncoderSettings("av1").resolve_pix_fmt(65, 49) == "yuv420p"
    EncoderSettings("ffv1", crf=99).validate()  # crf is ignored for lossless ffv1


# ---------------------------------------------------------------- finalize


def _two_parts(tmp_path, time_base=Fraction(1, 100), pts=None, rotation=0) -> tuple[list[str], list[int], list]:
    pts = pts or VFR_PTS + [p + 50 for p in VFR_PTS]
    frames = moving_square_frames(len(pts), 64, 48)
    half = len(pts) // 2
    parts = [
        encode(str(tmp_path / "part0.mp4"), frames[:half], pts[:half], time_base, rotation=rotation,
               frame_rate_hint=Fraction(50)),
        encode(str(tmp_path / "part1.mp4"), frames[half:], pts[half:], time_base, rotation=rotation,
               frame_rate_hint=Fraction(50)),
    ]
    return parts, pts, frames


def test_finalize_concatenates_parts_without_reencoding(tmp_path):
    parts, pts, _ = _two_parts(tmp_path, rotation=90)
    out = str(tmp_path / "final.mp4")
    finalize(parts, out, audio_source=None, audio_mode="copy")
    assert read_frame_timestamps(out) == pts
    info = probe(out)
    assert info.frame_count == len(pts) and info.audio is None and info.rotation == 90
    stitched = list(iter_frames(out))
    separate = [f for part in parts for f in iter_frames(part)]
    assert [f.pts for f in stitched] == pts
    assert all(np.array_equal(a.image, b.image) for a, b in zip(stitched, separate))  # bit-exact copy
    assert sorted(os.listdir(tmp_path)) == ["final.mp4", "part0.mp4", "part1.mp4"]  # no temp left


@pytest.mark.parametrize(
    "codec, ext, preset",
    [("h265", ".mp4", "ultrafast"), ("av1", ".mp4", "12"), ("ffv1", ".mkv", None), ("h264", ".mov", None)],
)
def test_finalize_each_codec_and_container(tmp_path, codec, ext, preset):
    pts = VFR_PTS + [p + 50 for p in VFR_PTS]
    frames = moving_square_frames(len(pts), 64, 48)
    settings = EncoderSettings(codec, preset=preset)
    parts = [
        encode(str(tmp_path / f"p{k}{ext}"), frames[k * 12 : k * 12 + 12], pts[k * 12 : k * 12 + 12],
               Fraction(1, 100), settings, frame_rate_hint=Fraction(50))
        for k in range(2)
    ]
    out = str(tmp_path / f"final{ext}")
    finalize(parts, out, audio_source=None, audio_mode="drop")
    scale = 10 if ext == ".mkv" else 1  # Matroska counts milliseconds
    assert read_frame_timestamps(out) == [p * scale for p in pts]
    stitched = list(iter_frames(out))
    separate = [f for part in parts for f in iter_frames(part)]
    assert len(stitched) == len(pts)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(stitched, separate))


def test_finalize_to_mkv_rounds_timestamps_to_milliseconds(tmp_path):
    tb = Fraction(1, 12800)  # what MP4 muxers pick for 25 fps: 512 ticks = 40 ms, fits Matroska
    frames = moving_square_frames(4, 64, 48)
    part = encode(str(tmp_path / "p.mp4"), frames, cfr_pts(4, step=512), tb, frame_rate_hint=Fraction(25))
    finalize([part], str(tmp_path / "ok.mkv"), audio_source=None, audio_mode="drop")
    assert read_frame_timestamps(str(tmp_path / "ok.mkv")) == [0, 40, 80, 120]
    ntsc = encode(str(tmp_path / "n.mp4"), frames, cfr_pts(4, step=1001), NTSC_TB)
    finalize([ntsc], str(tmp_path / "n.mkv"), audio_source=None, audio_mode="drop")
    assert read_frame_timestamps(str(tmp_path / "n.mkv")) == [0, 33, 67, 100]
    fast = encode(str(tmp_path / "f.mp4"), frames, cfr_pts(4), Fraction(1, 2000), frame_rate_hint=Fraction(25))
    with pytest.raises(OutputError, match="bad.mkv: frames 0.500 ms apart"):
        finalize([fast], str(tmp_path / "bad.mkv"), audio_source=None, audio_mode="drop")
    assert sorted(os.listdir(tmp_path)) == ["f.mp4", "n.mkv", "n.mp4", "ok.mkv", "p.mp4"]


def test_finalize_real_footage_copy_audio(tmp_path, footage):
    """Frame-rate conversion keeps duration: BBB's 5.1 AAC is copied and spans the video."""
    source = str(footage / "bigbuckbunny.mp4")
    frames = list(iter_frames(source, 0, 25))
    part = encode(str(tmp_path / "p.mp4"), [f.image[::8, ::8] for f in frames], [f.pts for f in frames],
                  probe(source).time_base, EncoderSettings(preset="ultrafast"), frame_rate_hint=Fraction(25))
    out = str(tmp_path / "bbb.mp4")
    finalize([part], out, audio_source=source, audio_mode="copy")
    info = probe(out)
    assert info.audio is not None and info.audio.channels == 6 and info.audio.codec == "aac"
    assert audio_seconds(out) == pytest.approx(audio_seconds(source), abs=0.05)


@pytest.fixture
def parts_and_source(tmp_path) -> tuple[list[str], str]:
    parts, _, _ = _two_parts(tmp_path, time_base=TB25, pts=cfr_pts(25))
    source = make_clip(
        str(tmp_path / "src.mp4"), moving_square_frames(25, 64, 48), cfr_pts(25), TB25, audio=True
    )  # 1 s of 440 Hz
    return parts, source


def test_finalize_copy_audio_keeps_duration(tmp_path, parts_and_source):
    parts, source = parts_and_source
    out = str(tmp_path / "copy.mp4")
    finalize(parts, out, audio_source=source, audio_mode="copy")
    assert probe(out).audio is not None
    assert audio_seconds(out) == pytest.approx(audio_seconds(source), abs=1e-9)  # packets copied as they are
    assert audio_seconds(out) == pytest.approx(video_seconds(out), abs=0.03)
    with av.open(out) as container:
        assert container.streams.audio[0].start_time == 0
        assert container.streams.video[0].start_time == 0


def test_finalize_copy_reencodes_audio_mp4_cannot_hold(tmp_path, parts_and_source):
    parts, _ = parts_and_source
    source = make_clip(str(tmp_path / "pcm.mkv"), moving_square_frames(25, 64, 48), cfr_pts(25), TB25,
                       audio=True, audio_codec="pcm_s16le")
    out = str(tmp_path / "pcm.mp4")
    finalize(parts, out, audio_source=source, audio_mode="copy")
    info = probe(out)
    assert info.audio is not None and info.audio.codec == "aac" and info.audio.channels == 2
    assert audio_seconds(out) == pytest.approx(audio_seconds(source), abs=0.03)


def test_finalize_stretch_audio_keeps_pitch(tmp_path, parts_and_source):
    parts, source = parts_and_source
    out = str(tmp_path / "slow.mp4")
    finalize(parts, out, audio_source=source, audio_mode="stretch", stretch=4.0)
    info = probe(out)
    assert info.audio is not None and info.audio.codec == "aac"
    # atempo loses a few ms at the edges (~60 ms for a 4x chain), hence a few % on a 1 s clip
    assert audio_seconds(out) == pytest.approx(4 * audio_seconds(source), rel=0.03)
    samples, rate = audio_samples(out)
    spectrum = np.abs(np.fft.rfft(samples[rate // 4 : rate // 4 + rate // 2]))
    peak_hz = np.argmax(spectrum) * rate / (rate // 2)
    assert peak_hz == pytest.approx(440, abs=10)  # tempo changed, pitch did not


def test_finalize_drop_audio(tmp_path, parts_and_source):
    parts, source = parts_and_source
    out = str(tmp_path / "mute.mp4")
    finalize(parts, out, audio_source=source, audio_mode="drop")
    with av.open(out) as container:
        assert not container.streams.audio


@pytest.mark.parametrize("mode", AUDIO_MODES)
def test_finalize_source_without_audio_gives_video_only(tmp_path, mode):
    parts, _, _ = _two_parts(tmp_path)
    source = make_clip(str(tmp_path / "silent.mp4"), moving_square_frames(3, 64, 48), cfr_pts(3), TB25)
    out = str(tmp_path / f"{mode}.mp4")
    finalize(parts, out, audio_source=source, audio_mode=mode, stretch=2.0)
    assert probe(out).audio is None


def test_finalize_failure_leaves_no_file(tmp_path):
    parts, _, _ = _two_parts(tmp_path)
    other = encode(str(tmp_path / "other.mp4"), moving_square_frames(3, 32, 32), [100, 101, 102], Fraction(1, 100))
    out = tmp_path / "final.mp4"
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(InputError, match="codec parameters differ"):
        finalize([*parts, other], str(out), audio_source=None, audio_mode="drop")
    with pytest.raises(InputError, match="not after"):
        finalize(parts[::-1], str(out), audio_source=None, audio_mode="drop")
    with pytest.raises(InputError):  # fails while writing: the audio source is not a media file
        finalize(parts, str(out), audio_source=_text_file(tmp_path), audio_mode="copy")
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "notes.mp4"])
    out.write_bytes(b"previous result")
    with pytest.raises(ConfigError):
        finalize(parts, str(out), audio_source=None, audio_mode="louder")
    assert out.read_bytes() == b"previous result"  # untouched on failure


# ---------------------------------------------------------------- small pure helpers


@pytest.mark.parametrize("stretch", [4.0, 2.0, 1.0, 0.5, 8.0, 3.0, 0.001, 1000.0])
def test_atempo_chain(stretch):
    chain = atempo_chain(stretch)
    assert all(0.5 <= t <= 100 for t in chain)
    assert np.prod(chain) == pytest.approx(1 / stretch)


def test_decode_order_dts_is_valid_for_any_reordering():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        display = np.cumsum(rng.integers(1, 5, n))  # VFR display times
        order = np.arange(n)
        for _ in range(int(rng.integers(0, n))):  # local reorders, like B-frames
            i = int(rng.integers(0, max(1, n - 3)))
            order[i : i + 3] = order[i : i + 3][::-1]
        pts = display[order]
        dts = decode_order_dts(pts)
        assert np.all(np.diff(dts) > 0) and np.all(dts <= pts)
    cfr_b = np.array([0, 3, 1, 2, 6, 4, 5])
    assert list(decode_order_dts(cfr_b)) == [-1, 0, 1, 2, 3, 4, 5]
