"""A source's colour: matrix, range, primaries, transfer, bit depth and HDR metadata, kept end to end.

Archives want the same picture back. So the output is tagged exactly as the source (an untagged tag stays
untagged), and YUV <-> RGB runs with the source's matrix and range both ways. Untagged matrices get the
guess players make (BT.709 from 720 lines up, BT.601 below), reported as guessed; an untagged range is
limited (FFmpeg's and every player's reading of untagged YUV).

Sources deeper than 8 bits go to the model as 16-bit RGB (never 8-bit) and come back at their depth.
HDR10's mastering display and content light level travel inside the bitstream: x264, x265 and SVT-AV1
take them as encoder parameters. FFV1 has no place for them in its bitstream, and PyAV 18 cannot set a
stream's coded side data (where Matroska/MP4 store them), so FFV1 output keeps only the tags.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, replace
from fractions import Fraction

import av
from av.sidedata.sidedata import Type as SideDataType
from av.video.frame import VideoFrame
from av.video.reformatter import Colorspace

from slomo_core.errors import ConfigError, InputError

# AVColorSpace / AVColorRange / AVColorPrimaries / AVColorTransferCharacteristic values and their FFmpeg names.
MATRIX_NAMES = {0: "gbr", 1: "bt709", 2: "unknown", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
                8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 14: "ictcp"}
RANGE_NAMES = {0: "unknown", 1: "tv", 2: "pc"}
PRIMARIES_NAMES = {1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
                   9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
TRANSFER_NAMES = {1: "bt709", 2: "unknown", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
                  13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67"}
UNSPECIFIED = 2  # AVCOL_SPC / AVCOL_PRI / AVCOL_TRC_UNSPECIFIED
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2
_BT709, _SMPTE170M = 1, 6
_PQ, _HLG = 16, 18
_HD_MIN_HEIGHT = 720

# The matrices swscale implements, by AVColorSpace (PyAV takes swscale's SWS_CS_* numbers).
_SWS_MATRIX = {1: Colorspace.ITU709, 4: Colorspace.FCC, 5: Colorspace.ITU601, 6: Colorspace.ITU601,
               7: Colorspace.SMPTE240M, 9: Colorspace.BT2020}

# Semi-packed and JPEG-range formats decoders may deliver, as the planar format encoders take.
_PLANAR_EQUIVALENT = {"nv12": "yuv420p", "nv21": "yuv420p", "nv16": "yuv422p", "p010le": "yuv420p10le",
                      "p010be": "yuv420p10le", "p016le": "yuv420p16le", "p210le": "yuv422p10le",
                      "yuvj420p": "yuv420p", "yuvj422p": "yuv422p", "yuvj444p": "yuv444p", "yuvj440p": "yuv440p"}


def pixel_depth(pix_fmt: str) -> int:
    """Bits per component of a pixel format (p010le: 10)."""
    return max(component.bits for component in av.VideoFormat(pix_fmt).components)


def planar_equivalent(pix_fmt: str) -> str:
    """The planar YUV format holding the same samples (p010le -> yuv420p10le, yuvj420p -> yuv420p)."""
    return _PLANAR_EQUIVALENT.get(pix_fmt, pix_fmt)


@dataclass(frozen=True)
class ColourInfo:
    """What the source's first frame says about its colour; the raw tags, so an output can copy them.

    ``matrix``/``range``/``primaries``/``transfer`` are FFmpeg's enum values (2 / 0 = unspecified).
    ``mastering_display`` holds the R, G, B and white-point CIE 1931 x, y chromaticities, then the
    maximum and minimum luminance in cd/m2; ``content_light`` is (MaxCLL, MaxFALL) in cd/m2.
    """

    pix_fmt: str
    bit_depth: int
    height: int
    matrix: int = UNSPECIFIED
    range: int = RANGE_UNSPECIFIED
    primaries: int = UNSPECIFIED
    transfer: int = UNSPECIFIED
    mastering_display: tuple[float, ...] | None = None
    content_light: tuple[int, int] | None = None

    @property
    def matrix_guessed(self) -> bool:
        """No matrix tag: conversions use the size-based guess players make."""
        return self.matrix == UNSPECIFIED

    @property
    def effective_matrix(self) -> int:
        if not self.matrix_guessed:
            return self.matrix
        return _BT709 if self.height >= _HD_MIN_HEIGHT else _SMPTE170M

    @property
    def effective_range(self) -> int:
        if self.range != RANGE_UNSPECIFIED:
            return self.range
        return RANGE_FULL if self.pix_fmt.startswith("yuvj") else RANGE_LIMITED

    @property
    def sws_matrix(self) -> Colorspace:
        """The matrix for swscale; InputError for matrices it does not implement (ICtCp, YCgCo...)."""
        matrix = self.effective_matrix
        if av.VideoFormat(self.pix_fmt).is_rgb:
            return Colorspace.DEFAULT  # RGB-coded video (gbrp...): no matrix applies
        if matrix not in _SWS_MATRIX:
            raise InputError(f"colour matrix {MATRIX_NAMES.get(matrix, matrix)} cannot be converted to RGB here")
        return _SWS_MATRIX[matrix]

    @property
    def rgb_format(self) -> str:
        """rgb24 for 8-bit sources; rgb48le (16-bit RGB, never 8-bit) for deeper ones."""
        return "rgb24" if self.bit_depth <= 8 else "rgb48le"

    @property
    def hdr(self) -> str | None:
        if self.transfer == _PQ:
            return "HDR10 (PQ)" if self.mastering_display or self.content_light else "PQ"
        if self.transfer == _HLG:
            return "HLG"
        return None

    def describe(self) -> dict[str, object]:
        """Named facts for ``slomo probe`` (FFmpeg's names)."""
        facts: dict[str, object] = {
            "pix_fmt": self.pix_fmt,
            "bit_depth": self.bit_depth,
            "matrix": MATRIX_NAMES.get(self.effective_matrix, str(self.effective_matrix))
            + (" (guessed from the frame size: untagged)" if self.matrix_guessed else ""),
            "range": RANGE_NAMES.get(self.effective_range)
            + (" (untagged)" if self.range == RANGE_UNSPECIFIED else ""),
            "primaries": PRIMARIES_NAMES.get(self.primaries, str(self.primaries)),
            "transfer": TRANSFER_NAMES.get(self.transfer, str(self.transfer)),
            "hdr": self.hdr or "no",
        }
        if self.mastering_display:
            md = self.mastering_display
            facts["mastering_display"] = (
                f"R({md[0]:.4f},{md[1]:.4f}) G({md[2]:.4f},{md[3]:.4f}) B({md[4]:.4f},{md[5]:.4f}) "
                f"WP({md[6]:.4f},{md[7]:.4f}) L({md[8]:g},{md[9]:g}) cd/m2"
            )
        if self.content_light:
            facts["content_light"] = f"MaxCLL {self.content_light[0]}, MaxFALL {self.content_light[1]} cd/m2"
        return facts

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ColourInfo:
        values = json.loads(text)
        for key in ("mastering_display", "content_light"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def _rationals(data: bytes, count: int) -> list[float]:
    numbers = struct.unpack(f"<{2 * count}i", data[: 8 * count])
    return [float(Fraction(numbers[2 * n], numbers[2 * n + 1])) if numbers[2 * n + 1] else 0.0 for n in range(count)]


def _mastering_display(data: bytes) -> tuple[float, ...] | None:
    """AVMasteringDisplayMetadata: 3x2 primaries (RGB order), white point, min and max luminance, 2 flags."""
    values = _rationals(data, 10)
    has_primaries, has_luminance = struct.unpack("<2i", data[80:88])
    if not (has_primaries and has_luminance):
        return None
    primaries, white, (min_lum, max_lum) = values[:6], values[6:8], values[8:10]
    return (*primaries, *white, max_lum, min_lum)


def colour_of_frame(frame: VideoFrame) -> ColourInfo:
    """The colour facts a decoded frame carries (tags, depth, HDR side data)."""
    mastering = light = None
    for side in frame.side_data:
        if side.type == SideDataType.MASTERING_DISPLAY_METADATA:
            mastering = _mastering_display(bytes(side))
        elif side.type == SideDataType.CONTENT_LIGHT_LEVEL:
            max_cll, max_fall = struct.unpack("<2I", bytes(side)[:8])
            light = (int(max_cll), int(max_fall))
    name = frame.format.name
    return ColourInfo(
        pix_fmt=name, bit_depth=pixel_depth(name), height=frame.height,
        matrix=int(frame.colorspace), range=int(frame.color_range),
        primaries=int(frame.color_primaries), transfer=int(frame.color_trc),
        mastering_display=mastering, content_light=light,
    )


def output_pix_fmt(codec: str, supported: set[str], source: ColourInfo, width: int, height: int) -> str:
    """The encoder pixel format that keeps the source's samples: its own format when the codec takes it,
    else 4:2:0 (4:4:4 for odd sizes, which 4:2:0 cannot hold) at the source's depth.

    ConfigError when the codec has no format as deep as the source (one line naming the way out).
    """
    own = planar_equivalent(source.pix_fmt)
    odd = bool(width % 2 or height % 2)
    x26x_cannot = odd and codec in ("h264", "h265") and not own.startswith("yuv444")  # x264/x265: even 4:2:x sizes
    if own in supported and not x26x_cannot:
        return own
    full_chroma = odd or av.VideoFormat(own).is_rgb or own.startswith("yuv444")
    chroma = "yuv444p" if full_chroma and "yuv444p" in supported and codec != "av1" else "yuv420p"
    for depth in (8, 10, 12, 14, 16):
        name = chroma if depth == 8 else f"{chroma}{depth}le"
        if depth >= source.bit_depth and name in supported:
            return name
    deepest = max((pixel_depth(f) for f in supported if f.startswith("yuv")), default=8)
    raise ConfigError(
        f"{codec} cannot store {source.bit_depth}-bit video (the source is {source.pix_fmt}, {codec} holds "
        f"{deepest} bits): choose a codec that can (ffv1 holds up to 16 bits, h265 12) or accept the loss with --pix-fmt {chroma}"
        + ("" if deepest == 8 else f"{deepest}le")
    )


def for_output(source: ColourInfo, pix_fmt: str) -> ColourInfo:
    """The source's colour as the output carries it: same tags and HDR metadata, the output's format.

    An RGB-coded source (gbrp, ...) written as YUV gets BT.709 limited range: YUV needs a matrix.
    """
    out = replace(source, pix_fmt=pix_fmt, bit_depth=pixel_depth(pix_fmt))
    if av.VideoFormat(source.pix_fmt).is_rgb and not av.VideoFormat(pix_fmt).is_rgb:
        out = replace(out, matrix=_BT709, range=RANGE_LIMITED)
    return out


def hdr_encoder_params(codec: str, colour: ColourInfo) -> dict[str, str]:
    """Encoder parameters that write the mastering display and content light level into the bitstream.

    x264/x265 count chromaticities in 0.00002 and luminance in 0.0001 cd/m2; SVT-AV1 takes plain numbers.
    Empty for FFV1 (no place in its bitstream) and for sources without the metadata.
    """
    md, cll = colour.mastering_display, colour.content_light
    if codec in ("h264", "h265"):
        parts = []
        if md:
            c = [round(v * 50000) for v in md[:8]]
            parts.append(f"master-display=G({c[2]},{c[3]})B({c[4]},{c[5]})R({c[0]},{c[1]})WP({c[6]},{c[7]})"
                         f"L({round(md[8] * 10000)},{round(md[9] * 10000)})")
        if cll:
            parts.append(f"{'max-cll' if codec == 'h265' else 'cll'}={cll[0]},{cll[1]}")
        if not parts:
            return {}
        if codec == "h264":
            return {"x264-params": ":".join(p.replace("master-display", "mastering-display") for p in parts)}
        return {"x265-params": ":".join(parts)}
    if codec == "av1":
        parts = []
        if md:
            parts.append(f"mastering-display=G({md[2]:.5f},{md[3]:.5f})B({md[4]:.5f},{md[5]:.5f})"
                         f"R({md[0]:.5f},{md[1]:.5f})WP({md[6]:.5f},{md[7]:.5f})L({md[8]:g},{md[9]:g})")
        if cll:
            parts.append(f"content-light={cll[0]},{cll[1]}")
        return {"svtav1-params": ":".join(parts)} if parts else {}
    return {}
