"""Synthetic frame triplets with known motion and occlusion, rendered exactly at any time t.

A photograph moves as the background (translation, slow rotation and zoom), and up to a few sprites cut
from other photographs move over it on their own paths, covering and uncovering it. Every frame is
rendered from the source images at its exact time, so the middle frame is ground truth, not an
approximation, for any t in (0, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MotionRange:
    """How far things move between frame 0 and frame 1 (pixels at crop scale) and how many sprites."""

    max_shift: float = 24.0
    max_rotation_deg: float = 6.0
    max_zoom: float = 0.06
    max_sprites: int = 3


@dataclass(frozen=True)
class _Path:
    """An affine path: image point ``c`` lands at ``pos + s * vel`` rotated/zoomed around it at time s."""

    centre: tuple[float, float]
    position: tuple[float, float]
    velocity: tuple[float, float]
    angle: float
    spin: float
    scale: float
    zoom: float

    def matrix(self, s: float) -> np.ndarray:
        angle = np.deg2rad(self.angle + s * self.spin)
        scale = self.scale * (1.0 + s * self.zoom)
        cos, sin = scale * np.cos(angle), scale * np.sin(angle)
        px = self.position[0] + s * self.velocity[0]
        py = self.position[1] + s * self.velocity[1]
        cx, cy = self.centre
        return np.array([[cos, -sin, px - cos * cx + sin * cy], [sin, cos, py - sin * cx - cos * cy]], np.float64)


def _random_path(rng: np.random.Generator, centre: tuple[float, float], position: tuple[float, float],
                 motion: MotionRange, scale: float, shift_scale: float, random_angle: bool) -> _Path:
    # Speeds are spread over the whole range, small motions included, in any direction.
    speed = motion.max_shift * shift_scale * rng.uniform(0.0, 1.0) ** 0.8
    direction = rng.uniform(0, 2 * np.pi)
    return _Path(
        centre=centre,
        position=position,
        velocity=(speed * np.cos(direction), speed * np.sin(direction)),
        angle=float(rng.uniform(-180, 180)) if random_angle else 0.0,
        spin=float(rng.uniform(-1, 1) * motion.max_rotation_deg),
        scale=scale,
        zoom=float(rng.uniform(-1, 1) * motion.max_zoom),
    )


def _sprite_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A soft-edged ellipse or random polygon covering most of an h x w box."""
    mask = np.zeros((h, w), np.uint8)
    if rng.random() < 0.5:
        axes = (int(w * rng.uniform(0.3, 0.5)), int(h * rng.uniform(0.3, 0.5)))
        cv2.ellipse(mask, (w // 2, h // 2), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    else:
        count = int(rng.integers(5, 10))
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = rng.uniform(0.25, 0.5, count)
        points = np.stack((w / 2 + radii * w * np.cos(angles), h / 2 + radii * h * np.sin(angles)), axis=1)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255, cv2.LINE_AA)
    return mask.astype(np.float32) / 255.0


def _render(image: np.ndarray, matrix: np.ndarray, size: int, border: int) -> np.ndarray:
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)


@dataclass(frozen=True)
class SyntheticScene:
    """A background and sprites with their paths; ``render(s)`` gives the frame at time s in [0, 1]."""

    background: np.ndarray
    background_path: _Path
    sprites: tuple[tuple[np.ndarray, np.ndarray, _Path], ...]
    size: int

    def render(self, s: float) -> np.ndarray:
        frame = _render(self.background, self.background_path.matrix(s), self.size, cv2.BORDER_REFLECT101)
        frame = frame.astype(np.float32)
        for sprite, mask, path in self.sprites:
            m = path.matrix(s)
            pixels = _render(sprite, m, self.size, cv2.BORDER_CONSTANT).astype(np.float32)
            alpha = _render(mask, m, self.size, cv2.BORDER_CONSTANT)[:, :, None]
            frame = frame * (1.0 - alpha) + pixels * alpha
        return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def random_scene(rng: np.random.Generator, photos: Sequence[np.ndarray], size: int,
                 motion: MotionRange = MotionRange()) -> SyntheticScene:
    """A scene on a random photograph with 0..max_sprites occluders cut from others."""
    background = photos[int(rng.integers(len(photos)))]
    h, w = background.shape[:2]
    scale = float(rng.uniform(0.5, 1.0)) * max(1.0, size * 1.5 / min(h, w))
    margin = size / scale
    centre = (float(rng.uniform(min(margin, w / 2), max(w - margin, w / 2))),
              float(rng.uniform(min(margin, h / 2), max(h - margin, h / 2))))
    start = (size / 2 - 0.5 * motion.max_shift * rng.uniform(-1, 1), size / 2 - 0.5 * motion.max_shift * rng.uniform(-1, 1))
    background_path = _random_path(rng, centre, start, motion, scale, shift_scale=1.0, random_angle=False)
    sprites = []
    for _ in range(int(rng.integers(0, motion.max_sprites + 1))):
        source = photos[int(rng.integers(len(photos)))]
        sh, sw = source.shape[:2]
        box = int(rng.integers(max(8, size // 6), max(9, size // 2)))
        box_h, box_w = min(box, sh), min(int(box * rng.uniform(0.6, 1.6)), sw)
        y, x = int(rng.integers(0, sh - box_h + 1)), int(rng.integers(0, sw - box_w + 1))
        sprite = np.ascontiguousarray(source[y : y + box_h, x : x + box_w])
        mask = _sprite_mask(rng, box_h, box_w)
        position = (float(rng.uniform(0, size)), float(rng.uniform(0, size)))
        path = _random_path(rng, (box_w / 2, box_h / 2), position, motion, 1.0, shift_scale=1.5, random_angle=True)
        sprites.append((sprite, mask, path))
    return SyntheticScene(background, background_path, tuple(sprites), size)


def synthetic_triplet(rng: np.random.Generator, photos: Sequence[np.ndarray], size: int, t: float,
                      motion: MotionRange = MotionRange()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame 0, frame at t, frame 1), uint8 RGB size x size."""
    scene = random_scene(rng, photos, size, motion)
    return scene.render(0.0), scene.render(t), scene.render(1.0)
