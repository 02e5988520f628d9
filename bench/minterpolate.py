"""FFmpeg's minterpolate through PyAV: the tool a CPU user would pick instead of slomo, as both benchmarks run it.

No torch here: the throughput benchmark times minterpolate's process from start to exit as the command a
user would type, so its start-up must be PyAV's, not the network's stack.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from fractions import Fraction

import av

MINTERPOLATE_OPTIONS = "mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1"


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
