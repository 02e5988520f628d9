"""Scene-cut detection between two consecutive frames, so the pipeline repeats a frame instead of morphing.

The decision looks at the pair alone (no history), so chunked and unchunked runs agree. Two cheap
measures on downscaled frames are averaged, each blind to one nuisance:

* a histogram distance (1 - intersection) ignores where things are, so camera and object motion barely
  move it. It is the larger of a hue-saturation histogram's (no V: blind to brightness flicker and
  exposure) and a histogram of grey levels standardised per frame (blind to gain and offset; it carries
  the signal where colour is absent, e.g. black-and-white footage);
* a structural distance on a tiny grey thumbnail (SSIM's contrast-structure term, no luminance term)
  ignores brightness offsets and gains, and the thumbnail is small enough that moderate motion is a
  sub-pixel change; it catches cuts between shots of similar palette, which the histograms miss.
  Large motion is not sub-pixel even there, so the structure is also compared after motion compensation
  (coarse DIS flow on the histogram-sized frames, each frame warped onto the other) and the smaller of
  the two distances counts: motion can only lower it, while no flow makes two different shots alike.

A real cut moves both; a nuisance moves mostly one. Calibrated on bikes.mp4: its cuts after frames 29,
75, 136, 186, 241 score 0.40-0.70 between consecutive frames and every other pair <= 0.12; across 8
frames (the quality bench's x8 pairs, large motion) cuts score >= 0.36 and other pairs <= 0.26, where
raw structure alone put two of them (64-72, 96-104) over the threshold. Carphone (no cut) stays <= 0.07.
"""

from __future__ import annotations

import numpy as np

from slomo_core.errors import ConfigError
from slomo_core.interp.base import as_8bit, check_frame_pair

DEFAULT_THRESHOLD = 0.28
# DIS needs frames at least this large; smaller ones are compared without motion compensation.
MIN_FLOW_SIZE = 16


class SceneCutDetector:
    """``score`` in [0, 1] (0 = same picture), ``is_cut`` when the score reaches ``threshold``.

    ``hist_width`` and ``thumb_width`` are the widths (pixels) the frames are shrunk to for the
    histograms and the structural measure; ``hue_bins`` x ``sat_bins`` is the colour histogram's size,
    ``grey_bins`` the standardised grey histogram's (over -3..3 standard deviations).
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        hist_width: int = 128,
        thumb_width: int = 32,
        hue_bins: int = 16,
        sat_bins: int = 8,
        grey_bins: int = 16,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"scene-cut threshold must be in (0, 1], got {threshold}")
        if min(hist_width, thumb_width, hue_bins, sat_bins, grey_bins) < 1:
            raise ConfigError("scene-cut widths and bin counts must be >= 1")
        self.threshold = float(threshold)
        self.hist_width = hist_width
        self.thumb_width = thumb_width
        self.hue_bins = hue_bins
        self.sat_bins = sat_bins
        self.grey_bins = grey_bins

    def _histograms(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised hue-saturation and standardised-grey histograms of the shrunk frame."""
        import cv2  # loaded when frames are compared, not when settings name the threshold

        small = _shrink(frame, self.hist_width)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        colour = cv2.calcHist([hsv], [0, 1], None, [self.hue_bins, self.sat_bins], [0, 180, 0, 256]).ravel()
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float64)
        # +4 grey levels: a flat frame's sensor noise is not contrast to be stretched.
        z = (grey - grey.mean()) / (grey.std() + 4.0)
        levels, _ = np.histogram(np.clip(z, -3.0, 3.0), bins=self.grey_bins, range=(-3.0, 3.0))
        return colour / max(float(colour.sum()), 1.0), levels / max(float(levels.sum()), 1.0)

    def _thumbnail(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.cvtColor(_shrink(frame, self.thumb_width), cv2.COLOR_RGB2GRAY).astype(np.float64)

    def histogram_distance(self, frame0: np.ndarray, frame1: np.ndarray) -> float:
        """1 - intersection, the larger over the colour and the standardised grey histograms, in [0, 1]."""
        colour0, grey0 = self._histograms(frame0)
        colour1, grey1 = self._histograms(frame1)
        distance = max(1.0 - np.minimum(colour0, colour1).sum(), 1.0 - np.minimum(grey0, grey1).sum())
        return float(np.clip(distance, 0.0, 1.0))

    def structure_distance(self, frame0: np.ndarray, frame1: np.ndarray) -> float:
        """(1 - s) / 2 with s = (2 cov + c) / (var0 + var1 + c) on grey thumbnails, in [0, 1].

        0 for the same picture (or two flat ones), ~0.5 for unrelated pictures, 1 for a negative.
        """
        return _structure(self._thumbnail(frame0), self._thumbnail(frame1))

    def motion_compensated_structure_distance(self, frame0: np.ndarray, frame1: np.ndarray) -> float:
        """``structure_distance`` after warping each frame onto the other with coarse DIS flow, averaged
        over both directions (so it stays symmetric); the raw distance where frames are too small for flow."""
        import cv2

        grey0, grey1 = (cv2.cvtColor(_shrink(f, self.hist_width), cv2.COLOR_RGB2GRAY) for f in (frame0, frame1))
        if min(grey0.shape) < MIN_FLOW_SIZE:
            return self.structure_distance(frame0, frame1)
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        distances = []
        for target, source in ((grey0, grey1), (grey1, grey0)):
            warped = _backward_warp(source, dis.calc(target, source, None))
            distances.append(_structure(_grey_thumbnail(target, self.thumb_width),
                                        _grey_thumbnail(warped, self.thumb_width)))
        return 0.5 * (distances[0] + distances[1])

    def score(self, frame0: np.ndarray, frame1: np.ndarray) -> float:
        """How different the two pictures are, in [0, 1]; symmetric in its arguments."""
        return self._score(frame0, frame1, settled_below=None)

    def is_cut(self, frame0: np.ndarray, frame1: np.ndarray) -> bool:
        """True when frame1 starts a new shot, judged from this pair alone."""
        return self._score(frame0, frame1, settled_below=self.threshold) >= self.threshold

    def _score(self, frame0: np.ndarray, frame1: np.ndarray, settled_below: float | None) -> float:
        """The score; when the score without motion compensation is already under ``settled_below``, that
        one (compensation can only lower it, so the decision stands): most pairs skip the flow."""
        check_frame_pair(frame0, frame1)
        frame0, frame1 = as_8bit(frame0), as_8bit(frame1)  # a cut is as visible in 8 bits as in 10
        histogram = self.histogram_distance(frame0, frame1)
        structure = self.structure_distance(frame0, frame1)
        if settled_below is None or 0.5 * (histogram + structure) >= settled_below:
            structure = min(structure, self.motion_compensated_structure_distance(frame0, frame1))
        return 0.5 * (histogram + structure)


def _shrink(frame: np.ndarray, width: int) -> np.ndarray:
    """Area-average down to ``width`` columns (never up), keeping the aspect ratio."""
    h, w = frame.shape[:2]
    if w <= width:
        return frame
    height = max(1, round(h * width / w))
    import cv2

    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def _grey_thumbnail(grey: np.ndarray, width: int) -> np.ndarray:
    return _shrink(grey, width).astype(np.float64)


def _structure(a: np.ndarray, b: np.ndarray) -> float:
    """(1 - s) / 2 of SSIM's contrast-structure term s over two whole grey images, in [0, 1]."""
    a = a - a.mean()
    b = b - b.mean()
    c = (0.03 * 255.0) ** 2  # SSIM's stabiliser: noise-level contrast is not structure
    s = (2.0 * (a * b).mean() + c) / ((a * a).mean() + (b * b).mean() + c)
    return float(np.clip((1.0 - s) / 2.0, 0.0, 1.0))


def _backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image sampled at p + flow(p) (bilinear, edges repeated): ``image`` seen from the flow's source frame."""
    import cv2

    h, w = image.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
