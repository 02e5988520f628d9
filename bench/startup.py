"""Wall time of the `slomo convert` command itself, start-up included: what a user waits for.

Modes, each a fresh `python -m flows.cli` process in a fresh folder, alternated so load on a shared machine
falls on all of them alike; medians over the repeats:

- ``local``: ``--local`` (in this process, no job state kept);
- ``default``: no run option (a one-worker job on local files: in process since issue 12; the flow before);
- ``flow``: ``--flow`` (the Prefect flow on a private local Ray), where the checkout has the option;
- ``finished``: the default command again on the finished job (returns from its DONE marker).

``--checkout`` runs the same modes with another tree's code (e.g. the main branch), side by side. The
outputs of ``local`` and ``default`` are compared frame by frame.

    python -m bench.startup                                  # embedded sample, 4x, 3 repeats
    python -m bench.startup --checkout /work/main --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
SAMPLE = HERE / "slomo_core" / "assets" / "sample.mp4"
MODES = ("local", "default", "flow", "finished")


def _run(checkout: Path, argv: list[str], cwd: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "flows.cli", *argv], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=900, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed in {checkout}: {result.stderr.strip()[-500:]}")
    return seconds


def has_flow_option(checkout: Path) -> bool:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    text = subprocess.run([sys.executable, "-m", "flows.cli", "convert", "--help"], env=env, capture_output=True,
                          text=True, check=True, cwd=tempfile.gettempdir()).stdout  # not this folder's flows/
    return "--flow" in text


def same_frames(a: str, b: str) -> bool:
    import numpy as np

    from slomo_core.video.decode import iter_frames

    left, right = list(iter_frames(a)), list(iter_frames(b))
    return len(left) == len(right) and all(x.pts == y.pts and np.array_equal(x.image, y.image)
                                           for x, y in zip(left, right))


def measure(checkout: Path, clip: str, factor: int, modes: tuple[str, ...], flow_option: bool) -> dict[str, float]:
    """One repeat of every mode for one checkout; returns seconds per mode."""
    times: dict[str, float] = {}
    base = ["convert", clip, "out.mp4", "--factor", str(factor), "-q"]
    with tempfile.TemporaryDirectory(prefix="slomo-bench-startup-") as root:
        folders = {mode: os.path.join(root, mode) for mode in modes}
        for folder in folders.values():
            os.makedirs(folder)
        for mode in modes:
            if mode == "local":
                times[mode] = _run(checkout, base + ["--local"], folders[mode])
            elif mode == "default":
                times[mode] = _run(checkout, base, folders[mode])
            elif mode == "flow" and flow_option:
                times[mode] = _run(checkout, base + ["--flow"], folders[mode])
            elif mode == "finished":
                if "default" in times:  # the job the default mode just finished
                    folders[mode] = folders["default"]
                else:
                    _run(checkout, base, folders[mode])
                times[mode] = _run(checkout, base, folders[mode])
        if "local" in modes and "default" in modes:
            times["same frames"] = float(same_frames(os.path.join(folders["local"], "out.mp4"),
                                                     os.path.join(folders["default"], "out.mp4")))
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=str(SAMPLE), help="a short local video (default: the embedded sample)")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkout", action="append", default=[], help="another source tree to time (repeatable)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    checkouts = [HERE] + [Path(c).resolve() for c in args.checkout]
    flow_option = {c: has_flow_option(c) for c in checkouts}
    runs: dict[Path, list[dict[str, float]]] = {c: [] for c in checkouts}
    for _ in range(args.repeats):
        for checkout in checkouts:
            runs[checkout].append(measure(checkout, args.clip, args.factor, modes, flow_option[checkout]))
    print(f"clip {Path(args.clip).name}, factor {args.factor}, {args.repeats} repeats, medians (s); "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print("| checkout | mode | median s | runs s | vs --local |")
    print("|---|---|---:|---|---:|")
    for checkout in checkouts:
        local = statistics.median(r["local"] for r in runs[checkout]) if "local" in modes else None
        for mode in modes:
            values = [r[mode] for r in runs[checkout] if mode in r]
            if not values:
                print(f"| {checkout} | {mode} | - | (no --flow option: the default is the flow) | |")
                continue
            median = statistics.median(values)
            ratio = f"{median / local:.2f}x" if local else ""
            print(f"| {checkout} | {mode} | {median:.2f} | {', '.join(f'{v:.2f}' for v in values)} | {ratio} |")
        if "same frames" in runs[checkout][0]:
            same = all(r["same frames"] for r in runs[checkout])
            print(f"| {checkout} | local == default, frame for frame | {'yes' if same else 'NO'} | | |")


if __name__ == "__main__":
    main()
