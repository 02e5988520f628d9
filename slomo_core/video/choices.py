"""What a user can choose about the output video and its audio, known without loading FFmpeg.

Settings, manifests and the CLI need these names and checks; keeping them apart from the encoder and the
audio code (which load PyAV) lets a finished job return without loading FFmpeg, torch or OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from slomo_core.errors import ConfigError

if TYPE_CHECKING:
    from slomo_core.video.colour import ColourInfo

AUDIO_MODES = ("copy", "drop", "stretch")
SUBTITLE_MODES = ("copy", "stretch", "drop")  # subtitles and chapters (video/side_streams.py)
CODECS = {"h264": "libx264", "h265": "libx265", "av1": "libsvtav1", "ffv1": "ffv1"}

_DEFAULT_CRF = {"h264": 18, "h265": 20, "av1": 30}
_CRF_RANGE = {"h264": (0, 51), "h265": (0, 51), "av1": (0, 63)}
_X26X_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)
_DEFAULT_PRESET = {"h264": "medium", "h265": "medium", "av1": "8"}


@dataclass(frozen=True)
class EncoderSettings:
    """How to encode: codec family, quality (CRF), speed preset, pixel format, threads.

    None means "the codec's sensible default" so manifests can store exactly what the user asked.
    """

    codec: str = "h264"
    crf: int | None = None  # None -> 18 h264, 20 h265, 30 av1; ignored for ffv1 (lossless)
    preset: str | None = None  # x264/x265 names ("medium"); av1: "0".."13" (default "8")
    pix_fmt: str | None = None  # None -> see resolve_pix_fmt
    threads: int = 0  # 0 = let the encoder decide

    def validate(self) -> None:
        """ConfigError for anything the encoder would reject later, with the option named."""
        if self.codec not in CODECS:
            raise ConfigError(f"unknown codec {self.codec!r}: choose one of {', '.join(CODECS)}")
        if self.crf is not None and self.codec in _CRF_RANGE:
            low, high = _CRF_RANGE[self.codec]
            if not isinstance(self.crf, int) or not low <= self.crf <= high:
                raise ConfigError(f"crf {self.crf!r} out of range for {self.codec}: use {low}..{high}")
        if self.preset is not None:
            if self.codec in ("h264", "h265") and self.preset not in _X26X_PRESETS:
                raise ConfigError(f"unknown {self.codec} preset {self.preset!r}: use one of {', '.join(_X26X_PRESETS)}")
            if self.codec == "av1" and self.preset not in {str(n) for n in range(14)}:
                raise ConfigError(f"av1 preset must be a number 0..13 (as text), got {self.preset!r}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads!r}")
        if self.pix_fmt is not None:
            from slomo_core.video.encode import encoder_pix_fmts  # FFmpeg is loaded only to check one

            supported = encoder_pix_fmts(self.codec)
            if self.pix_fmt not in supported:
                choices = ", ".join(sorted(supported))
                raise ConfigError(f"pixel format {self.pix_fmt!r} not supported by {self.codec}: use one of {choices}")

    def resolved_crf(self) -> int | None:
        """The CRF actually used (None for ffv1, which is lossless)."""
        return None if self.codec == "ffv1" else (self.crf if self.crf is not None else _DEFAULT_CRF[self.codec])

    def resolved_preset(self) -> str | None:
        """The preset actually used (None for ffv1, which has none)."""
        return self.preset if self.preset is not None else _DEFAULT_PRESET.get(self.codec)

    def resolve_pix_fmt(self, width: int, height: int, source: ColourInfo | None = None) -> str:
        """The pixel format for this frame size (and source: its own format and depth, see output_pix_fmt).

        Without a source: yuv420p by default; yuv444p when a side is odd (x264/x265 4:2:0 needs even
        sizes) and for ffv1. av1 (SVT-AV1) only encodes 4:2:0 but accepts odd sizes, so it stays yuv420p.
        """
        if self.pix_fmt is not None:
            return self.pix_fmt
        if source is not None:
            from slomo_core.video.colour import output_pix_fmt  # FFmpeg: loaded once a job is planned
            from slomo_core.video.encode import encoder_pix_fmts

            return output_pix_fmt(self.codec, encoder_pix_fmts(self.codec), source, width, height)
        if self.codec == "ffv1":
            return "yuv444p"
        if self.codec == "av1":
            return "yuv420p"
        return "yuv444p" if width % 2 or height % 2 else "yuv420p"


def resolve_subtitle_mode(mode: str | None, rate_mode: str) -> str:
    """The mode for subtitles and chapters: copy (default in fps mode), stretch (default in slowmo), drop."""
    resolved = mode or ("copy" if rate_mode == "fps" else "stretch")
    if resolved not in SUBTITLE_MODES:
        raise ConfigError(f"unknown subtitle mode {resolved!r}: choose one of {', '.join(SUBTITLE_MODES)}")
    if resolved == "copy" and rate_mode == "slowmo":
        raise ConfigError("subtitles and chapters cannot be copied unchanged into slow motion: "
                          "use --subtitles stretch or drop")
    if resolved == "stretch" and rate_mode == "fps":
        raise ConfigError("--subtitles stretch only applies to slowmo mode (fps mode keeps the duration)")
    return resolved
