"""Photographs that ship inside installed packages, the raw material of synthetic training sequences.

scikit-image's wheel carries a set of real photographs (astronaut, coffee, rocket, retina, Hubble deep
field, motorcycle, textures...). They are not video and have nothing in common with the benchmark clips,
so sequences built from them keep training data apart from the quality benchmark.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from slomo_core.errors import ConfigError

# Real photographs and textures; charts, text and synthetic drawings are left out.
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "clock_motion.png", "coffee.png", "coins.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
    "motorcycle_right.png", "retina.jpg", "rocket.jpg",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def skimage_photo_dir() -> Path:
    try:
        import skimage.data
    except ImportError:
        raise ConfigError("scikit-image is not installed: install the train extra (pip install -e '.[train]')") from None
    return Path(os.path.dirname(skimage.data.__file__))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An RGB uint8 image (grey images are expanded, alpha dropped)."""
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError(f"{path}: not a readable image")
    return np.ascontiguousarray(image[:, :, ::-1])


def photo_paths(extra_dirs: Sequence[str] = ()) -> list[Path]:
    """scikit-image's photographs plus every image in the given folders."""
    base = skimage_photo_dir()
    paths = [base / name for name in SKIMAGE_PHOTOS if (base / name).exists()]
    for folder in extra_dirs:
        found = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ConfigError(f"{folder}: no images found")
        paths.extend(found)
    return paths


def load_photos(paths: Iterable[Path], min_side: int) -> list[np.ndarray]:
    """Decoded photographs, each upscaled if needed so its short side is at least ``min_side``."""
    photos = []
    for path in paths:
        image = read_rgb(path)
        short = min(image.shape[:2])
        if short < min_side:
            scale = min_side / short
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        photos.append(image)
    if not photos:
        raise ConfigError("no photographs to build synthetic sequences from")
    return photos
