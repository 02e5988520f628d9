"""Batches of training triplets: synthetic photo sequences mixed with real-video triplets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from training.synthetic import MotionRange, synthetic_triplet


@dataclass
class Batch:
    frame0: torch.Tensor
    frame_t: torch.Tensor
    frame1: torch.Tensor
    t: torch.Tensor

    def to(self, device: torch.device) -> Batch:
        return Batch(*(x.to(device, non_blocking=True) for x in (self.frame0, self.frame_t, self.frame1, self.t)))


def _stack(images: Sequence[np.ndarray]) -> torch.Tensor:
    array = np.stack(images).astype(np.float32) / 255.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


@dataclass
class TripletSampler:
    """Draws ``video_fraction`` of each batch from the clips (when any) and the rest from photographs."""

    photos: Sequence[np.ndarray]
    clips: Sequence  # training.video_samples.VideoClip (imported lazily: it needs PyAV)
    size: int
    motion: MotionRange = field(default_factory=MotionRange)
    video_fraction: float = 0.5
    max_span: int = 8

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        if self.clips and rng.random() < self.video_fraction:
            from training.video_samples import video_triplet

            return video_triplet(rng, self.clips, self.size, self.max_span)
        t = float(rng.uniform(0.05, 0.95))
        frame0, frame_t, frame1 = synthetic_triplet(rng, self.photos, self.size, t, self.motion)
        if rng.random() < 0.5:  # reversed time, as for video triplets
            frame0, frame1, t = frame1, frame0, 1.0 - t
        return frame0, frame_t, frame1, t

    def batch(self, rng: np.random.Generator, count: int) -> Batch:
        samples = [self.sample(rng) for _ in range(count)]
        return Batch(
            _stack([s[0] for s in samples]),
            _stack([s[1] for s in samples]),
            _stack([s[2] for s in samples]),
            torch.tensor([s[3] for s in samples], dtype=torch.float32),
        )
