"""Every frame of a file as a tiny luma thumbnail: what a whole-file scan (duplicate frames) needs.

One decode pass in display order, no RGB conversion: each frame becomes 8-bit grey (swscale, whatever
the source's pixel format or bit depth) and is averaged over square blocks in float, so a thumbnail
pixel is the exact mean luma of its block (swscale's own area shrink rounds to whole levels).
"""

from __future__ import annotations

from collections.abc import Iterator

import av.error
import numpy as np

from slomo_core.errors import InputError
from slomo_core.video.probe import ffmpeg_reason, find_video_stream, open_input


def block_means(luma: np.ndarray, block: int) -> np.ndarray:
    """Mean of every whole ``block`` x ``block`` block of a 2-D array (float32); a partial edge is left out."""
    h, w = (luma.shape[0] // block) * block, (luma.shape[1] // block) * block
    if h == 0 or w == 0:  # a frame smaller than one block is one block
        return np.array([[luma.mean()]], dtype=np.float32)
    return luma[:h, :w].astype(np.float32).reshape(h // block, block, w // block, block).mean(axis=(1, 3))


def iter_luma_thumbnails(path: str, block: int) -> Iterator[np.ndarray]:
    """Each frame's luma averaged over ``block`` x ``block`` pixel blocks (float32, H/block x W/block)."""
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    with open_input(path) as container:
        stream = find_video_stream(container, path)
        stream.thread_type = "AUTO"
        shown = 0
        try:
            for frame in container.decode(stream):
                yield block_means(frame.to_ndarray(format="gray"), block)
                shown += 1
        except av.error.FFmpegError as err:
            raise InputError(f"{path}: decode error at frame {shown} ({ffmpeg_reason(err)})") from err
