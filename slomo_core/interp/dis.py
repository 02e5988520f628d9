"""A weight-free interpolator: OpenCV DIS optical flow fed into Super SloMo's synthesis.

It needs no checkpoint, so it serves when no weights are at hand, on CPU-only machines and in tests.
Flow comes from DIS (Kroeger et al., ECCV 2016) in both directions. The intermediate flows and the fusion
are the network's own (``model.equations``): eq. 4's intermediate flows, weighed per pixel against two
one-sided estimates by how well each one's two warps agree. The learnt visibility can be replaced by
forward-backward flow consistency (off by default: it measured a tie). Everything runs on the host, where
DIS's flows are: backward warps under the network's warp convention by ``cv2.remap``, the formulas in
numpy and OpenCV over the same arrays. It imports no torch: on a 2-core CPU that is about 1.1 s of a short
command's start-up.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import cv2
import numpy as np

from slomo_core.errors import ConfigError
from slomo_core.interp.base import PairRequest, as_8bit, check_frame_pair
from slomo_core.model.equations import fuse, intermediate_flows
from slomo_core.model.warp_convention import SLOMO_WARP

if TYPE_CHECKING:
    import torch

# DIS refuses images much smaller than its patches; tiny frames are edge-padded up to this and cropped back.
MIN_FLOW_SIZE = 16

PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class DISInterpolator:
    """Bidirectional DIS flow + Super SloMo synthesis; flows once per pair, all its times batched.

    Options, defaults measured on bikes.mp4 / carphone (PSNR of the dropped frame at t=0.5):

    * ``preset``: DIS speed/quality preset; ``patch_stride`` overrides the preset's patch stride (``None``,
      the default, keeps the preset's own: 3 under "medium", the flow of the ``dis-warp-average`` baseline).
      Thread CPU per 640x272 direction: stride 2 30 ms, 3 18 ms, 4 13 ms. Stride 2 gains 0.19 dB on bikes
      x2 but is under the baseline on bbb640 x2 and synth256 x8, and costs 25 ms per pair; stride 4 loses
      0.1-0.2 dB on bikes and the synthetic clips at x2. None of OpenCV's other knobs measured better
      everywhere (bench.quality, every group, x2 and x8): fewer variational iterations (2-4) or a smaller
      alpha gain at x2 and lose up to 0.09 dB at x8, more (6-10) the other way round; finest scale 0 without
      refinement, or averaging the two directions' flows, lose on some real clip.
    * ``variational_refinement``: DIS's variational step (6 of 18 ms per direction at 640x272).
    * ``blur_sigma``: Gaussian blur (pixels) of the grey images before DIS; 0 by default, since
      blurring measured neutral to slightly worse.
    * ``occlusion_sigma`` (pixels) and ``occlusion_relative``: the forward-backward error tolerated before
      a pixel counts as occluded, sigma^2 + relative * |flow|^2 (large motions carry larger harmless
      errors); used only with ``visibility_floor`` below 1. Stricter or looser tolerances (sigma 1-10,
      relative 0.05-1, floors 0.5-0.9) do not change the verdict below: some real clip loses at x8.
    * ``visibility_floor``: the least weight an occluded frame keeps in the paper's fusion; 1 (the default)
      weighs nothing, and the forward-backward maps are not computed. Hard occlusion decisions (1e-3) cost
      0.3-0.5 dB: DIS flows and the intermediate flow approximation are least reliable exactly at motion
      boundaries, where hedging pays. With eq. 4 alone, every cell of the quality bench (5 clips, x2 and
      x8) against the plain warp average: floor 0.5 from -0.040 to +0.122 dB, 0.7 -0.012 to +0.051, 0.8
      -0.005 to +0.025, 0.9 -0.001 to +0.007 (1.0 is the baseline); on real footage a tie at best. With the
      flow candidates on, floor 0.9 adds +0.002 dB on average, for two more warps per candidate and time.
    * ``flow_candidates``: per pixel, three estimates of the intermediate flows instead of eq. 4 alone: eq. 4,
      the forward flow alone (F_t->0 = -t F_0->1, F_t->1 = (1-t) F_0->1) and the backward flow alone
      (F_t->0 = t F_1->0, F_t->1 = -(1-t) F_1->0), each fused as usual, then blended with weights
      exp(-(d - d_min) / ``agreement_scale``), d the candidate's disagreement between its two warps (mean
      absolute difference over RGB in 8-bit levels, box-filtered over ``agreement_window`` pixels): where
      eq. 4's blend of the two flows is wrong (motion boundaries, flows that disagree), the warps of a better
      estimate agree. Against the plain warp average (bench.quality, every group, PSNR dB) it gains
      +0.45 / +0.12 on bikes x2 / x8, +0.009 / +0.025 on carphone, +0.056 / +0.135 on bbb640, +0.16 /
      +0.03 on synth96 and +0.48 / +0.08 on synth256, where eq. 4 alone ties it (within 0.001 dB). Scale
      10 favours the synthetic clips, 40 the real ones (bikes x2 +0.47, carphone x2 +0.007); window 5
      loses a little on carphone and the synthetic clips. A hard per-pixel choice (the smallest d) loses
      0.04 dB on bbb640 x2; picking the flow that way, the fixed-point inverse of the forward flow
      (F_t->0(p) = -t F_0->1(p + F_t->0(p)), 1-3 iterations from eq. 4) loses 0.04-1.7 dB everywhere.
      Cost per 640x272 pair (wall, one call of 11 pairs, flows included): 29 instead of 25 ms at x2, 64-69
      instead of 60-66 ms at x8 (the blend by ``cv2.blendLinear``, the unweighted fusion by OpenCV).
    * ``outside_weight``: weight of a sample whose source lies beyond the frame's edge (1 = no special
      case). Down-weighting them (0.01) gains 0.3-0.5 dB on exact synthetic motion but loses 0.1-0.2 dB
      on real footage, where DIS's flow near the border is the least reliable; so it is off.
    * ``threads``: OpenCV's (process-wide) thread count, set only when given.
    * ``flow_threads``: threads computing one call's flows (each direction of each pair a task, one DIS
      solver per thread) ahead of the synthesis, which runs in the calling thread (single-threaded numpy):
      on 2 cores (bikes, 60 frames, x2) that took the model stage from 4.0 to 3.2 s, where a synthesis on
      2 torch threads fought the flow threads (4.0 s).
    * The synthesis runs on the host, one time at a time: warps by ``cv2.remap``, the paper's formulas
      (``model.equations``) in numpy over the same arrays, in float32.
    """

    name = "dis"

    def __init__(
        self,
        preset: str = "medium",
        patch_stride: int | None = None,
        variational_refinement: bool = True,
        blur_sigma: float = 0.0,
        occlusion_sigma: float = 1.0,
        occlusion_relative: float = 0.05,
        visibility_floor: float = 1.0,
        outside_weight: float = 1.0,
        flow_candidates: bool = True,
        agreement_scale: float = 20.0,
        agreement_window: int = 3,
        threads: int | None = None,
        flow_threads: int = 2,
    ) -> None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown DIS preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if patch_stride is not None and patch_stride < 1:
            raise ConfigError("patch_stride must be >= 1")
        if occlusion_sigma <= 0 or occlusion_relative < 0 or blur_sigma < 0:
            raise ConfigError("occlusion_sigma must be > 0; occlusion_relative and blur_sigma >= 0")
        if not 0 < visibility_floor <= 1:
            raise ConfigError("visibility_floor must be in (0, 1]")
        if not 0 < outside_weight <= 1:
            raise ConfigError("outside_weight must be in (0, 1]")
        if flow_threads < 1:
            raise ConfigError("flow_threads must be >= 1")
        if agreement_scale <= 0 or agreement_window < 1:
            raise ConfigError("agreement_scale must be > 0 and agreement_window >= 1")
        if threads is not None:
            if threads < 0:
                raise ConfigError("threads must be >= 0")
            cv2.setNumThreads(threads)
        self.preset = preset
        self.blur_sigma = float(blur_sigma)
        self.occlusion_sigma = float(occlusion_sigma)
        self.occlusion_relative = float(occlusion_relative)
        self.visibility_floor = float(visibility_floor)
        self.outside_weight = float(outside_weight)
        self.flow_candidates = flow_candidates
        self.agreement_scale = float(agreement_scale)
        self.agreement_window = agreement_window
        self.flow_threads = flow_threads
        self._grid_cache = _pixel_grid(0, 0)
        self._solvers: queue.SimpleQueue[cv2.DISOpticalFlow] = queue.SimpleQueue()  # one thread each at a time
        for _ in range(flow_threads):
            solver = cv2.DISOpticalFlow_create(PRESETS[preset])
            if patch_stride is not None:
                solver.setPatchStride(min(patch_stride, solver.getPatchSize()))
            if not variational_refinement:
                solver.setVariationalRefinementIterations(0)
            self._solvers.put(solver)

    def _grey(self, frame: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(as_8bit(frame), cv2.COLOR_RGB2GRAY)  # DIS takes 8-bit grey; fusion keeps the depth
        if self.blur_sigma > 0:
            grey = cv2.GaussianBlur(grey, (0, 0), self.blur_sigma)
        return grey

    def _greys(self, frame0: np.ndarray, frame1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_frame_pair(frame0, frame1)
        return _pad_to(self._grey(frame0), MIN_FLOW_SIZE), _pad_to(self._grey(frame1), MIN_FLOW_SIZE)

    def _flow(self, grey_from: np.ndarray, grey_to: np.ndarray, h: int, w: int) -> np.ndarray:
        """One direction's flow, HxWx2 float32, cropped back to the frame; safe from any thread."""
        solver = self._solvers.get()
        try:
            return np.ascontiguousarray(solver.calc(grey_from, grey_to, None)[:h, :w], np.float32)
        finally:
            self._solvers.put(solver)

    def compute_flows(self, frame0: np.ndarray, frame1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """F_0->1 and F_1->0 as HxWx2 float32 pixels (channel 0 = x)."""
        g0, g1 = self._greys(frame0, frame1)
        h, w = frame0.shape[:2]
        return self._flow(g0, g1, h, w), self._flow(g1, g0, h, w)

    def _flows_ahead(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                     pool: ThreadPoolExecutor) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every pair's flows queued on ``pool`` at once (both directions as two tasks), yielded in order."""
        pending = []
        for frame0, frame1 in pairs:
            g0, g1 = self._greys(frame0, frame1)
            h, w = frame0.shape[:2]
            pending.append((pool.submit(self._flow, g0, g1, h, w), pool.submit(self._flow, g1, g0, h, w)))
        for forward, backward in pending:
            yield forward.result(), backward.result()

    def flow_tensors(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        """F_0->1 and F_1->0 of every (frame0, frame1) pair as N x 2 x H x W float32 CPU tensors (pixels),
        computed on the flow threads: what ``superslomo-dis`` is given, at inference and in training."""
        import torch  # the network's callers only: the interpolator itself runs without torch

        with ThreadPoolExecutor(self.flow_threads, thread_name_prefix="slomo-dis-flow") as pool:
            flows = list(self._flows_ahead(pairs, pool))
        return tuple(torch.from_numpy(np.stack([f[d] for f in flows])).permute(0, 3, 1, 2).contiguous() for d in (0, 1))

    def _seen_in_other(self, flow_ab: np.ndarray, flow_ba: np.ndarray, grid: np.ndarray) -> np.ndarray:
        """Per pixel of frame a, how surely it reappears in frame b (forward-backward agreement), HxW in (0, 1]."""
        back = _warp(flow_ba, flow_ab, grid)
        ab_x, ab_y, back_x, back_y = flow_ab[..., 0], flow_ab[..., 1], back[..., 0], back[..., 1]
        err_x, err_y = ab_x + back_x, ab_y + back_y
        err2 = err_x * err_x + err_y * err_y
        mag2 = ab_x * ab_x + ab_y * ab_y + back_x * back_x + back_y * back_y
        tolerance = mag2 * np.float32(self.occlusion_relative) + np.float32(self.occlusion_sigma**2)
        return np.exp(-(err2 / tolerance))

    def _interpolate_pair(self, request: PairRequest, flows: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
        flow01, flow10 = flows
        grid = self._grid(*flow01.shape[:2])
        image0, image1 = (frame.astype(np.float32) for frame in (request.frame0, request.frame1))
        # Each frame's "reappears in the other frame" map, warped to time t with it; only where weighted.
        weighted = self.visibility_floor < 1 or self.outside_weight < 1
        seen = (self._seen_in_other(flow01, flow10, grid), self._seen_in_other(flow10, flow01, grid)) if weighted else None
        white = 255 if request.frame0.dtype == np.uint8 else 65535  # 16-bit RGB of a deep source stays 16-bit
        level_type = np.uint8 if white == 255 else np.uint16
        scale = np.float32(self.agreement_scale * white / 255)  # 8-bit levels, in the frames' own
        estimates = (intermediate_flows, forward_only, backward_only) if self.flow_candidates else (intermediate_flows,)
        out: list[np.ndarray] = []
        for t in (np.float32(t) for t in request.times):
            candidates = [estimate(flow01, flow10, t) for estimate in estimates]
            frame = self.synthesize_at(image0, image1, candidates, t, grid, seen, scale)
            np.clip(frame, 0, white, out=frame)
            out.append(np.rint(frame, out=frame).astype(level_type))
        return out

    def synthesize_at(self, image0: np.ndarray, image1: np.ndarray,
                      candidates: Sequence[tuple[np.ndarray, np.ndarray]], t: np.float32, grid: np.ndarray,
                      seen: tuple[np.ndarray, np.ndarray] | None, scale: np.float32) -> np.ndarray:
        """The float frame at time t from float images: each candidate (F_t->0, F_t->1) warped and fused,
        several blended by their warps' agreement (``scale`` in the images' levels). ``seen``: the frames'
        forward-backward maps when visibility is weighted, else None."""
        fused, disagreements = [], []
        for flow_t0, flow_t1 in candidates:
            warped0, warped1 = _warp(image0, flow_t0, grid), _warp(image1, flow_t1, grid)
            fused.append(self._fuse(warped0, warped1, flow_t0, flow_t1, t, grid, seen))
            if len(candidates) > 1:
                disagreements.append(self._disagreement(warped0, warped1))
        return fused[0] if len(fused) == 1 else _blend_by_agreement(fused, disagreements, scale)

    def _fuse(self, warped0: np.ndarray, warped1: np.ndarray, flow_t0: np.ndarray, flow_t1: np.ndarray,
              t: np.float32, grid: np.ndarray, seen: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        """The paper's fusion (eq. 1) of the two warps at time t. Without visibility weighting (V = 1
        everywhere) it is the plain (1-t, t) blend, done by OpenCV (a twentieth of the weighted fusion's time)."""
        if seen is None:
            return cv2.addWeighted(warped0, float(1 - t), warped1, float(t), 0.0)
        # Content of I0 that has no match in I1 (about to be covered) is missing from I1, so it lowers
        # I1's weight at time t, and vice versa: V_t1 comes from frame 0's map, V_t0 from frame 1's.
        # Maps are warped apart from the images: fusion over contiguous arrays runs 2x faster than over views.
        floor = np.float32(self.visibility_floor)
        visibility1 = np.maximum(_warp(seen[0], flow_t0, grid), floor)[..., None]
        visibility0 = np.maximum(_warp(seen[1], flow_t1, grid), floor)[..., None]
        if self.outside_weight < 1:
            visibility0 = visibility0 * _inside(flow_t0, self.outside_weight)
            visibility1 = visibility1 * _inside(flow_t1, self.outside_weight)
        return fuse(warped0, warped1, visibility0, visibility1, t, SLOMO_WARP.fusion_eps)

    def _disagreement(self, warped0: np.ndarray, warped1: np.ndarray) -> np.ndarray:
        """HxW: mean absolute difference of the two warps over RGB, box-filtered over agreement_window."""
        mean = cv2.transform(cv2.absdiff(warped0, warped1), _CHANNEL_MEAN)
        return cv2.blur(mean, (self.agreement_window, self.agreement_window)) if self.agreement_window > 1 else mean

    def _grid(self, h: int, w: int) -> np.ndarray:
        """``_pixel_grid`` of the last frame size, kept: building it costs as much as a warp."""
        if self._grid_cache.shape[:2] != (h, w):
            self._grid_cache = _pixel_grid(h, w)
        return self._grid_cache

    def interpolate(self, requests: Sequence[PairRequest]) -> list[list[np.ndarray]]:
        """One list of HxWx3 RGB frames (the requests' dtype) per request, one frame per requested time, in order."""
        for request in requests:  # bad input fails before any flow is queued
            check_frame_pair(request.frame0, request.frame1)
            for t in request.times:
                if not 0.0 < float(t) < 1.0:
                    raise ConfigError(f"interpolation time {float(t)} is not strictly inside (0, 1)")
        busy = [n for n, request in enumerate(requests) if request.times]
        out: list[list[np.ndarray]] = [[] for _ in requests]
        with ThreadPoolExecutor(self.flow_threads, thread_name_prefix="slomo-dis-flow") as pool:
            pairs = [(requests[n].frame0, requests[n].frame1) for n in busy]
            for n, flows in zip(busy, self._flows_ahead(pairs, pool), strict=True):
                out[n] = self._interpolate_pair(requests[n], flows)
        return out


def forward_only(flow01: np.ndarray, flow10: np.ndarray, t: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(F_t->0, F_t->1) from the forward flow alone, read at p: (-t F_0->1, (1-t) F_0->1)."""
    return -t * flow01, (1 - t) * flow01


def backward_only(flow01: np.ndarray, flow10: np.ndarray, t: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(F_t->0, F_t->1) from the backward flow alone, read at p: (t F_1->0, -(1-t) F_1->0)."""
    return t * flow10, -(1 - t) * flow10


_CHANNEL_MEAN = np.full((1, 3), 1 / 3, np.float32)  # cv2.transform: HxWx3 -> HxW channel mean


def _blend_by_agreement(frames: Sequence[np.ndarray], disagreements: Sequence[np.ndarray],
                        scale: np.float32) -> np.ndarray:
    """Per pixel, the candidates' frames weighted by exp(-(d - d_min) / scale): the best-agreeing one
    counts fully, one ``scale`` levels worse e^-1 of it. Folded pairwise through ``cv2.blendLinear``
    ((w_a a + w_b b) / (w_a + w_b)), a third of numpy's time."""
    least = np.minimum.reduce(disagreements)
    weights = [cv2.exp((least - d) / scale) for d in disagreements]
    blended, total = frames[0], weights[0]
    for frame, weight in zip(frames[1:], weights[1:], strict=True):
        blended = cv2.blendLinear(blended, frame, total, weight)
        total = total + weight
    return blended


def _inside(flow: np.ndarray, outside_weight: float) -> np.ndarray:
    """HxWx1: 1 where p + flow(p) lies in the frame, falling linearly over one pixel to ``outside_weight``
    beyond its edge (where a warp only repeats the border)."""
    h, w, _ = flow.shape
    x = flow[..., 0] + np.arange(w, dtype=np.float32)
    y = flow[..., 1] + np.arange(h, dtype=np.float32)[:, None]
    beyond = np.maximum(np.maximum(-x, 0) + np.maximum(x - (w - 1), 0), np.maximum(-y, 0) + np.maximum(y - (h - 1), 0))
    return (1 - np.minimum(beyond, 1) * np.float32(1 - outside_weight))[..., None]


def _pixel_grid(h: int, w: int) -> np.ndarray:
    """HxWx2 float32 pixel coordinates (x, y): a flow added to it is a map for ``cv2.remap``."""
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.dstack((xs, ys))


def _warp(image: np.ndarray, flow: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``image`` (HxW or HxWxC float32, C <= 4) sampled at p + flow(p), bilinear, edges repeated: slomo's warp
    convention (``model.synthesis.SLOMO_WARP``: pixel centres exact, border clamped) done by ``cv2.remap`` on
    the host, a third of ``grid_sample``'s time here (remap's positions are exact to 1/32 pixel)."""
    return cv2.remap(image, grid + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _pad_to(grey: np.ndarray, size: int) -> np.ndarray:
    """Replicate the bottom and right edges so both sides are at least ``size``."""
    h, w = grey.shape
    if h >= size and w >= size:
        return grey
    return cv2.copyMakeBorder(grey, 0, max(0, size - h), 0, max(0, size - w), cv2.BORDER_REPLICATE)
