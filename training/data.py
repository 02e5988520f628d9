"""Batches of training triplets: synthetic photo sequences mixed with real-video triplets.

Every random choice is drawn on the host from one numpy generator, in the same order whichever renderer
makes the pixels, so a run is reproducible and resumable from its RNG state. Synthetic frames are made
either by OpenCV one sample at a time (fastest on CPUs) or by ``DeviceSceneRenderer`` in one batch on the
training device (a GPU renders a batch in milliseconds; one CPU thread with OpenCV starved it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from training.synthetic import MotionRange, SyntheticScene, random_scene

if TYPE_CHECKING:
    from slomo_core.interp.dis import DISInterpolator


@dataclass
class Batch:
    """Frames in [0, 1], NCHW; ``flow01``/``flow10`` (N x 2 x H x W pixels) only for ``superslomo-dis``."""

    frame0: torch.Tensor
    frame_t: torch.Tensor
    frame1: torch.Tensor
    t: torch.Tensor
    flow01: torch.Tensor | None = None
    flow10: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        return Batch(*(None if x is None else x.to(device, non_blocking=True)
                       for x in (self.frame0, self.frame_t, self.frame1, self.t, self.flow01, self.flow10)))


def with_dis_flows(batch: Batch, dis: DISInterpolator) -> Batch:
    """The batch with DIS flows both ways for each (frame0, frame1), computed on the host by the ``dis``
    interpolator's own flow function and settings (what ``superslomo-dis`` sees at inference), on the frames'
    device. The frames were 8-bit before they became floats, so rounding them back is exact."""
    def levels(frames: torch.Tensor) -> np.ndarray:
        return frames.detach().mul(255.0).round_().to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()

    flow01, flow10 = dis.flow_tensors(list(zip(levels(batch.frame0), levels(batch.frame1), strict=True)))
    device = batch.frame0.device
    return replace(batch, flow01=flow01.to(device), flow10=flow10.to(device))


def _stack(images: Sequence[np.ndarray]) -> torch.Tensor:
    # Transposed while still uint8: a float NHWC -> NCHW copy in torch took half of the data time.
    array = np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))
    return torch.from_numpy(array).float().div_(255.0)


@dataclass(frozen=True)
class SceneDraw:
    """A synthetic sample before rendering: frame 0, t and frame 1 are the scene at ``times``."""

    scene: SyntheticScene
    t: float  # of the middle frame in the scene's own time
    backwards: bool  # frame 0 is the scene at time 1: the sample's t is then 1 - t

    @property
    def times(self) -> tuple[float, float, float]:
        return (1.0, self.t, 0.0) if self.backwards else (0.0, self.t, 1.0)

    @property
    def sample_t(self) -> float:
        return 1.0 - self.t if self.backwards else self.t


VideoDraw = tuple[np.ndarray, np.ndarray, np.ndarray, float]


@dataclass
class TripletSampler:
    """Draws ``video_fraction`` of each batch from the clips (when any) and the rest from photographs.

    With ``device`` set, synthetic frames are rendered there in one batch and the batch lives there.
    """

    photos: Sequence[np.ndarray]
    clips: Sequence  # training.video_samples.VideoClip (imported lazily: it needs PyAV)
    size: int
    motion: MotionRange = field(default_factory=MotionRange)
    video_fraction: float = 0.5
    max_span: int = 8
    device: torch.device | None = None
    _renderer: object = field(default=None, init=False, repr=False)

    def _draw(self, rng: np.random.Generator) -> VideoDraw | SceneDraw:
        if self.clips and rng.random() < self.video_fraction:
            from training.video_samples import video_triplet

            return video_triplet(rng, self.clips, self.size, self.max_span)
        t = float(rng.uniform(0.05, 0.95))
        scene = random_scene(rng, self.photos, self.size, self.motion)
        return SceneDraw(scene, t, backwards=bool(rng.random() < 0.5))  # reversed time, as for video triplets

    def sample(self, rng: np.random.Generator) -> VideoDraw:
        """One triplet, rendered by OpenCV on the host."""
        drawn = self._draw(rng)
        if not isinstance(drawn, SceneDraw):
            return drawn
        frame0, frame_t, frame1 = (drawn.scene.render(s) for s in drawn.times)
        return frame0, frame_t, frame1, drawn.sample_t

    def batch(self, rng: np.random.Generator, count: int) -> Batch:
        if self.device is None:
            samples = [self.sample(rng) for _ in range(count)]
            return Batch(
                _stack([s[0] for s in samples]),
                _stack([s[1] for s in samples]),
                _stack([s[2] for s in samples]),
                torch.tensor([s[3] for s in samples], dtype=torch.float32),
            )
        return self._device_batch([self._draw(rng) for _ in range(count)])

    def _device_batch(self, draws: list[VideoDraw | SceneDraw]) -> Batch:
        from training.device_render import DeviceSceneRenderer

        if self._renderer is None:
            self._renderer = DeviceSceneRenderer(self.photos, self.size, self.device)
        renderer: DeviceSceneRenderer = self._renderer
        scene_rows = [i for i, d in enumerate(draws) if isinstance(d, SceneDraw)]
        video_rows = [i for i, d in enumerate(draws) if not isinstance(d, SceneDraw)]
        t = np.empty(len(draws), np.float32)
        frames = torch.empty((len(draws), 3, 3, self.size, self.size), device=self.device)
        if scene_rows:
            times = np.array([draws[i].times for i in scene_rows])
            t[scene_rows] = [draws[i].sample_t for i in scene_rows]
            rendered = renderer.render([draws[i].scene for i in scene_rows], times)
            frames.index_copy_(0, renderer.upload(np.array(scene_rows)), rendered)
        if video_rows:
            t[video_rows] = [draws[i][3] for i in video_rows]
            stacked = np.stack([np.stack(draws[i][:3]) for i in video_rows]).transpose(0, 1, 4, 2, 3)
            pixels = renderer.upload(stacked).float().div_(255.0)
            frames.index_copy_(0, renderer.upload(np.array(video_rows)), pixels)
        return Batch(frames[:, 0], frames[:, 1], frames[:, 2], renderer.upload(t))
