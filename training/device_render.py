"""Synthetic scenes rendered in batches with ``grid_sample``, on the training device.

The scenes are the ones ``training.synthetic.random_scene`` draws (same RNG stream, same parameters);
only the pixels are made here instead of by OpenCV, one sample at a time on one CPU thread. The
photographs are uploaded once. Per batch, only the affine matrices and the small sprite boxes with their
masks travel to the device, and the frames at times 0, t and 1 of every sample are rendered together.

The conventions follow ``SyntheticScene.render``: pixel centres at integer coordinates, backgrounds
mirrored at the photo's edge (OpenCV's BORDER_REFLECT_101 is grid_sample's ``reflection`` with
``align_corners=True``), sprites zero outside their box, bilinear sampling, colours rounded to 8 bits
before and after compositing. Every frame comes from the sources at its own exact time, so the middle
frame is ground truth for any t. Results agree with OpenCV's to about one level (OpenCV interpolates
with 5-bit fixed-point weights; this is float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from training.synthetic import SyntheticScene


def _sampling_maps(matrices: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """(..., 2, 3) source->frame pixel affines as ``affine_grid`` thetas (align_corners=True).

    Theta maps the frame's normalised coordinates to the source's: frame pixel -> normalised frame
    coordinate undone, the affine inverted, then source pixel -> normalised source coordinate. Composed in
    float64 so that integer motions stay exact.
    """
    linear, offset = matrices[..., :2], matrices[..., 2:]
    inverse = np.linalg.inv(linear)
    maps = np.concatenate((inverse, -inverse @ offset), axis=-1)  # frame pixel -> source pixel
    half = (size - 1) / 2.0
    from_frame = np.array([[half, 0.0, half], [0.0, half, half], [0.0, 0.0, 1.0]])
    to_source = np.array([[2.0 / max(width - 1, 1), 0.0, -1.0], [0.0, 2.0 / max(height - 1, 1), -1.0]])
    homogeneous = np.concatenate((maps, np.broadcast_to([0.0, 0.0, 1.0], (*maps.shape[:-2], 1, 3))), axis=-2)
    return to_source @ homogeneous @ from_frame


class DeviceSceneRenderer:
    """Renders ``SyntheticScene`` batches on ``device``; ``photos`` must be the list the scenes were drawn from."""

    def __init__(self, photos: Sequence[np.ndarray], size: int, device: torch.device) -> None:
        self.device = device
        self.size = size
        self._photos = [torch.from_numpy(np.ascontiguousarray(p.transpose(2, 0, 1))).to(device).float()[None]
                        for p in photos]
        self._index = {id(p): i for i, p in enumerate(photos)}

    def upload(self, array: np.ndarray) -> torch.Tensor:
        """Host to device without waiting for the queued training step (pinned, asynchronous on CUDA)."""
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type != "cuda":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _grid(self, thetas: torch.Tensor) -> torch.Tensor:
        """(N, T, 2, 3) thetas -> one grid (N, T*S, S, 2) holding the T frames of each row one above the other."""
        n, t = thetas.shape[:2]
        s = self.size
        grid = F.affine_grid(thetas.reshape(n * t, 2, 3), [n * t, 1, s, s], align_corners=True)
        return grid.reshape(n, t * s, s, 2)

    def render(self, scenes: Sequence[SyntheticScene], times: np.ndarray) -> torch.Tensor:
        """Frames of ``scenes`` at ``times`` (N, T) as float 0..1 in (N, T, 3, S, S) on the device."""
        n, t, s = len(scenes), times.shape[1], self.size
        # Everything is prepared on the host first, so this overlaps with the step the device is running.
        groups: dict[int, list[int]] = {}
        for i, scene in enumerate(scenes):
            groups.setdefault(self._index[id(scene.background)], []).append(i)
        background_jobs = []
        for photo_index, rows in groups.items():
            h, w = self._photos[photo_index].shape[-2:]
            matrices = np.stack([[scenes[i].background_path.matrix(float(x)) for x in times[i]] for i in rows])
            background_jobs.append((photo_index, np.array(rows), _sampling_maps(matrices, w, h, s)))
        sprite_jobs = []
        for slot in range(max((len(scene.sprites) for scene in scenes), default=0)):
            rows = [i for i, scene in enumerate(scenes) if len(scene.sprites) > slot]
            sprites = [scenes[i].sprites[slot] for i in rows]
            box_h = max(sprite.shape[0] for sprite, _, _ in sprites)
            box_w = max(sprite.shape[1] for sprite, _, _ in sprites)
            boxes = np.zeros((len(rows), 4, box_h, box_w), np.float32)  # RGB and coverage, zero outside the box
            for k, (sprite, mask, _) in enumerate(sprites):
                boxes[k, :3, : sprite.shape[0], : sprite.shape[1]] = sprite.transpose(2, 0, 1)
                boxes[k, 3, : mask.shape[0], : mask.shape[1]] = mask
            matrices = np.stack([[path.matrix(float(x)) for x in times[i]] for i, (_, _, path) in zip(rows, sprites)])
            sprite_jobs.append((np.array(rows), boxes, _sampling_maps(matrices, box_w, box_h, s)))

        frames = torch.empty((n, t, 3, s, s), device=self.device)
        for photo_index, rows, thetas in background_jobs:
            grid = self._grid(self.upload(thetas.astype(np.float32))).reshape(1, len(rows) * t * s, s, 2)
            pixels = F.grid_sample(self._photos[photo_index], grid, mode="bilinear", padding_mode="reflection",
                                   align_corners=True)
            frames.index_copy_(0, self.upload(rows), pixels.view(3, len(rows), t, s, s).permute(1, 2, 0, 3, 4))
        frames.round_()
        for rows, boxes, thetas in sprite_jobs:
            index = self.upload(rows)
            drawn = F.grid_sample(self.upload(boxes), self._grid(self.upload(thetas.astype(np.float32))),
                                  mode="bilinear", padding_mode="zeros", align_corners=True)
            drawn = drawn.view(len(rows), 4, t, s, s).permute(0, 2, 1, 3, 4)
            colour, alpha = drawn[:, :, :3].round(), drawn[:, :, 3:]
            under = frames.index_select(0, index)
            frames.index_copy_(0, index, under * (1.0 - alpha) + colour * alpha)
        return frames.round_().clamp_(0, 255).div_(255.0)
