"""Colour kept (issue 9, items 1 and 2): tags, matrix and range both ways, bit depth, HDR metadata.

Sources are tiny clips made here with PyAV, written straight from YUV with the tags under test, so
nothing in slomo_core decides what the source is.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import ColorRange

from flows.cli import main
from slomo_core.convert import ConvertOptions, convert_locally
from slomo_core.errors import ConfigError
from slomo_core.interp.base import PairRequest
from slomo_core.interp.dis import DISInterpolator
from slomo_core.interp.network import InferenceSettings, SuperSloMoInterpolator
from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig
from slomo_core.model.unet import PRESETS
from slomo_core.timestamps import RateSpec
from slomo_core.video.colour import ColourInfo, colour_of_frame, hdr_encoder_params
from slomo_core.video.decode import SWS_FLAGS, frame_to_rgb, iter_frames
from slomo_core.video.encode import EncoderSettings, VideoEncoder
from slomo_core.video.probe import probe

W, H = 64, 48
# (matrix, range, primaries, transfer) as FFmpeg numbers
BT601_LIMITED = (6, 1, 6, 6)
BT709_FULL = (1, 2, 1, 1)
BT2020_PQ = (9, 1, 9, 16)
BT2020_HLG = (9, 1, 9, 18)
UNTAGGED = (2, 0, 2, 2)
_SWS_MATRIX = {1: 1, 6: 5, 9: 9, 2: 5}  # the swscale matrix that writes each test source
MASTERING = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"


def _picture(shift: int = 0) -> np.ndarray:
    """Saturated primaries (where a wrong matrix shows most) over smooth gradients (where 8 bits show)."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.zeros((H, W, 3), np.uint16)
    img[..., 0] = xx * 65535 // (W - 1)
    img[..., 1] = yy * 65535 // (H - 1)
    img[..., 2] = 65535 - img[..., 0] // 2
    third = W // 3
    img[: H // 3, :third] = (65535, 0, 0)
    img[: H // 3, third : 2 * third] = (0, 65535, 0)
    img[: H // 3, 2 * third :] = (0, 0, 65535)
    return np.roll(img, shift, axis=1)


def make_source(path: Path, pix_fmt: str, tags: tuple[int, int, int, int], *, codec: str = "ffv1",
                frames: int = 3, moving: bool = False, options: dict[str, str] | None = None) -> str:
    matrix, colour_range, primaries, transfer = tags
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25, options=options or {})
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        ctx = stream.codec_context
        ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc = matrix, colour_range, primaries, transfer
        for i in range(frames):
            rgb = av.VideoFrame.from_ndarray(_picture(2 * i if moving else 0), format="rgb48le")
            frame = rgb.reformat(format=pix_fmt, dst_colorspace=_SWS_MATRIX[matrix],
                                 dst_color_range=ColorRange(colour_range or 1), interpolation=SWS_FLAGS)
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return str(path)


def decoded(path: str) -> list[av.VideoFrame]:
    with av.open(path) as container:
        return list(container.decode(video=0))


def planes(frame: av.VideoFrame) -> list[np.ndarray]:
    dtype = np.uint8 if frame.format.components[0].bits <= 8 else np.uint16
    return [np.frombuffer(bytes(p), dtype).reshape(p.height, -1)[:, : p.width].astype(np.int64) for p in frame.planes]


def tags(frame: av.VideoFrame) -> tuple[int, int, int, int]:
    return (int(frame.colorspace), int(frame.color_range), int(frame.color_primaries), int(frame.color_trc))


def slowmo(source: str, output: Path, encoder: EncoderSettings) -> str:
    convert_locally(source, str(output), DISInterpolator(), ConvertOptions(RateSpec("slowmo", factor=2), encoder=encoder))
    return str(output)


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


@pytest.mark.parametrize(("pix_fmt", "source_tags"), [
    ("yuv420p", BT601_LIMITED), ("yuv420p", BT709_FULL), ("yuv420p10le", BT2020_PQ), ("yuv420p", UNTAGGED),
], ids=["bt601-limited", "bt709-full", "bt2020-pq-10bit", "untagged"])
def test_ffv1_keeps_tags_and_original_frames_bit_identical(tmp_path: Path, pix_fmt: str, source_tags) -> None:
    source = make_source(tmp_path / "in.mkv", pix_fmt, source_tags)
    out = slowmo(source, tmp_path / "out.mkv", EncoderSettings("ffv1"))
    src, dst = decoded(source), decoded(out)
    assert len(dst) == 2 * len(src) - 1
    # An untagged range comes out tagged limited, the reading players give it: the MP4 'colr' box of
    # the chunk segments has no "unspecified" range. Untagged matrix, primaries and transfer stay untagged.
    expected = (2, 1, 2, 2) if source_tags == UNTAGGED else source_tags
    for frame in dst:
        assert (frame.format.name, tags(frame)) == (pix_fmt, expected)
    for i, original in enumerate(src):  # k = 0: the source's own samples, bit for bit
        for a, b in zip(planes(original), planes(dst[2 * i])):
            np.testing.assert_array_equal(a, b)
    # New frames between two equal frames: RGB and back with the source's matrix and range lands on the
    # source's samples, up to rounding and 4:2:0 chroma at the colour edges.
    scale = 4 if pix_fmt.endswith("10le") else 1
    y, u, v = (np.abs(a - b).mean() for a, b in zip(planes(src[0]), planes(dst[1])))
    assert y <= 0.25 * scale and u <= 3 * scale and v <= 3 * scale, (y, u, v)


def test_a_wrong_matrix_would_fail_the_check_above() -> None:
    """The tolerance above catches a matrix mix-up: BT.601 samples read as BT.709 and written back as 601."""
    rgb = av.VideoFrame.from_ndarray(_picture(), format="rgb48le")
    source = rgb.reformat(format="yuv420p", dst_colorspace=5, dst_color_range=ColorRange.MPEG, interpolation=SWS_FLAGS)

    def round_trip(read_as: int) -> av.VideoFrame:
        as_rgb = source.reformat(format="rgb24", src_colorspace=read_as, src_color_range=ColorRange.MPEG,
                                 interpolation=SWS_FLAGS)
        return as_rgb.reformat(format="yuv420p", dst_colorspace=5, dst_color_range=ColorRange.MPEG,
                               interpolation=SWS_FLAGS)

    right, wrong = (np.abs(planes(source)[0] - planes(round_trip(m))[0]).mean() for m in (5, 1))
    assert right <= 0.25 < wrong, (right, wrong)


def test_x264_crf0_passes_original_frames_through_above_50_db(tmp_path: Path) -> None:
    source = make_source(tmp_path / "in.mkv", "yuv420p", BT709_FULL)
    out = slowmo(source, tmp_path / "out.mp4", EncoderSettings("h264", crf=0))
    src, dst = decoded(source), decoded(out)
    assert tags(dst[0]) == BT709_FULL and dst[0].format.components[0].bits == 8
    for i, original in enumerate(src):
        for a, b in zip(planes(original), planes(dst[2 * i])):
            assert psnr(a, b, 255) >= 50


def test_untagged_source_is_reported_as_guessed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    untagged = probe(make_source(tmp_path / "in.mkv", "yuv420p", UNTAGGED)).colour
    assert untagged.matrix_guessed and untagged.effective_matrix == 6  # 48 lines: BT.601, as players guess
    tagged = probe(make_source(tmp_path / "t.mkv", "yuv420p", BT709_FULL)).colour
    assert not tagged.matrix_guessed and tagged.effective_matrix == 1 and tagged.effective_range == 2
    assert main(["probe", str(tmp_path / "in.mkv")]) == 0
    printed = capsys.readouterr().out
    assert "smpte170m (guessed from the frame size: untagged)" in printed and "bit_depth            8" in printed


def test_ten_bit_frames_reach_the_model_as_16_bit_and_come_back_so(tmp_path: Path) -> None:
    source = make_source(tmp_path / "in.mkv", "yuv420p10le", BT2020_PQ, moving=True)
    frames = [f.image for f in iter_frames(source)]
    assert all(f.dtype == np.uint16 for f in frames)
    assert len(np.unique(frames[0][..., 1] & 0xFF)) > 4  # more than 8 significant bits
    request = PairRequest(frames[0], frames[1], (0.5,))
    torch_model = SuperSloMo(SuperSloMoConfig(widths=PRESETS["light"]))
    network = SuperSloMoInterpolator(torch_model, InferenceSettings(device="cpu", dtype="fp32"))
    for interpolator in (DISInterpolator(), network):
        (made,) = interpolator.interpolate([request])[0]
        assert made.dtype == np.uint16 and made.shape == frames[0].shape
    eight_bit = [(f >> 8).astype(np.uint8) for f in frames[:2]]
    (made8,) = DISInterpolator().interpolate([PairRequest(*eight_bit, (0.5,))])[0]
    assert made8.dtype == np.uint8  # 8-bit sources stay 8-bit


def test_ten_bit_new_frames_are_finer_than_an_8_bit_detour(tmp_path: Path) -> None:
    source = make_source(tmp_path / "in.mkv", "yuv420p10le", BT2020_PQ)
    out = slowmo(source, tmp_path / "out.mkv", EncoderSettings("ffv1"))
    original, made = decoded(source)[0], decoded(out)[1]
    assert made.format.name == "yuv420p10le"
    detour_rgb = (frame_to_rgb(original) >> 8).astype(np.uint16) * 257  # the same frame through 8 bits
    with VideoEncoder(str(tmp_path / "detour.mkv"), W, H, Fraction(1, 25), EncoderSettings("ffv1"),
                      colour=probe(source).colour) as encoder:
        encoder.write(detour_rgb, 0)
    detour = decoded(str(tmp_path / "detour.mkv"))[0]
    kept = np.abs(planes(original)[0] - planes(made)[0]).mean()
    lost = np.abs(planes(original)[0] - planes(detour)[0]).mean()
    assert kept < 0.5 < lost, (kept, lost)


@pytest.mark.parametrize(("codec", "ext"), [("h265", ".mkv"), ("av1", ".mkv")])
def test_hdr10_keeps_transfer_primaries_and_metadata(tmp_path: Path, codec: str, ext: str) -> None:
    params = f"log-level=error:master-display={MASTERING}:max-cll=1000,400"
    source = make_source(tmp_path / "in.mkv", "yuv420p10le", BT2020_PQ, codec="libx265",
                         options={"x265-params": params, "preset": "ultrafast"})
    before = probe(source).colour
    assert before.hdr == "HDR10 (PQ)" and before.content_light == (1000, 400)
    out = slowmo(source, tmp_path / f"out{ext}", EncoderSettings(codec, preset="ultrafast" if codec == "h265" else "12"))
    after = probe(out).colour
    assert (after.pix_fmt, after.matrix, after.primaries, after.transfer) == ("yuv420p10le", 9, 9, 16)
    assert after.content_light == before.content_light
    # HEVC counts chromaticities in 1/50000 and luminance in 1/10000 cd/m2, as the source; AV1 has its own
    # fixed point (minimum luminance in 1/16384 cd/m2: 0.0001 comes back as 0.000122).
    tolerance = 2e-5 if codec == "h265" else 1 / 16384
    assert after.mastering_display == pytest.approx(before.mastering_display, abs=tolerance)


def test_hlg_keeps_its_transfer_at_10_bits_with_h264(tmp_path: Path) -> None:
    source = make_source(tmp_path / "in.mkv", "yuv420p10le", BT2020_HLG)
    out = slowmo(source, tmp_path / "out.mp4", EncoderSettings("h264", preset="ultrafast"))
    frame = decoded(out)[1]
    assert (frame.format.name, tags(frame)) == ("yuv420p10le", BT2020_HLG)  # x264 here builds High 10
    assert probe(out).colour.hdr == "HLG"


def test_hdr_encoder_params_match_the_encoders_units() -> None:
    info = ColourInfo("yuv420p10le", 10, 48, 9, 1, 9, 16, (0.68, 0.32, 0.265, 0.69, 0.15, 0.06, 0.3127, 0.329,
                                                            1000.0, 0.0001), (1000, 400))
    assert hdr_encoder_params("h265", info) == {"x265-params": f"master-display={MASTERING}:max-cll=1000,400"}
    assert hdr_encoder_params("h264", info)["x264-params"].startswith("mastering-display=G(13250,34500)")
    assert "content-light=1000,400" in hdr_encoder_params("av1", info)["svtav1-params"]
    assert hdr_encoder_params("ffv1", info) == {}


def test_a_codec_that_cannot_hold_the_depth_says_so_in_one_line(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = make_source(tmp_path / "in.mkv", "yuv420p12le", BT709_FULL)
    with pytest.raises(ConfigError, match=r"av1 cannot store 12-bit video .* --pix-fmt yuv420p10le"):
        slowmo(source, tmp_path / "refused.mkv", EncoderSettings("av1"))
    assert not (tmp_path / "refused.mkv").exists()
    assert main(["convert", source, str(tmp_path / "cli.mkv"), "--factor", "2", "--codec", "av1", "--local", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot store 12-bit video" in err
    out = tmp_path / "accepted.mkv"
    assert main(["convert", source, str(out), "--factor", "2", "--codec", "av1", "--preset", "12",
                 "--pix-fmt", "yuv420p10le", "--local", "-q"]) == 0
    assert decoded(str(out))[0].format.name == "yuv420p10le"
    lossless = slowmo(source, tmp_path / "ffv1.mkv", EncoderSettings("ffv1"))
    assert decoded(lossless)[0].format.name == "yuv420p12le"  # FFV1 keeps the source's depth


def test_p010_frames_pass_through_as_10_bit_planar(tmp_path: Path) -> None:
    """p010 (10 bits in the high bits of 16) is what hardware decoders hand out; no file format PyAV
    writes keeps it, so its frames are fed to the decoder's and the encoder's paths directly."""
    rgb = av.VideoFrame.from_ndarray(_picture(), format="rgb48le")
    p010 = rgb.reformat(format="p010le", dst_colorspace=9, dst_color_range=ColorRange.MPEG, interpolation=SWS_FLAGS)
    p010.colorspace, p010.color_range = 9, 1
    image = frame_to_rgb(p010)
    assert image.dtype == np.uint16
    colour = colour_of_frame(p010)
    assert colour.bit_depth == 10
    path = str(tmp_path / "p010.mkv")
    with VideoEncoder(path, W, H, Fraction(1, 25), EncoderSettings("ffv1"), colour=colour) as encoder:
        assert encoder.pix_fmt == "yuv420p10le"
        encoder.write(p010, 0)
        encoder.write(image, 1)
    got = decoded(path)
    luma = np.frombuffer(bytes(p010.planes[0]), np.uint16).reshape(H, -1)[:, :W] >> 6
    np.testing.assert_array_equal(planes(got[0])[0], luma)
    assert np.abs(planes(got[1])[0] - luma).mean() < 0.5


def test_probe_prints_colour_depth_and_hdr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = f"log-level=error:master-display={MASTERING}:max-cll=1000,400"
    source = make_source(tmp_path / "in.mkv", "yuv420p10le", BT2020_PQ, codec="libx265",
                         options={"x265-params": params, "preset": "ultrafast"})
    assert main(["probe", source]) == 0
    printed = capsys.readouterr().out
    for fact in ("bit_depth            10", "matrix               bt2020nc", "range                tv",
                 "primaries            bt2020", "transfer             smpte2084", "hdr                  HDR10 (PQ)",
                 "L(1000,0.0001)", "MaxCLL 1000, MaxFALL 400"):
        assert fact in printed, fact
