"""Carry the source's audio into the output: copied, dropped, or slowed down keeping pitch.

Audio is handled once, at stitch time (mux.py). Its timeline is the source's, shifted so the
source's first video frame is at 0 (where the output video starts) and, for "stretch", scaled by
the stretch factor. Packets come out as a time-ordered iterator already bound to the output
stream, so the muxer can interleave them with video without holding either in memory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from fractions import Fraction

import av
import av.audio.stream
import av.container
import av.error
import av.filter

from slomo_core.errors import ConfigError, InputError
from slomo_core.video.choices import AUDIO_MODES
from slomo_core.video.probe import ffmpeg_reason
from slomo_core.video.side_streams import keep_stream_tags

log = logging.getLogger(__name__)


# atempo accepts 0.5..100 per instance; slower than 0.5x needs a chain.
_ATEMPO_MIN = 0.5
_ATEMPO_MAX = 100.0
_MAX_STRETCH = 1000.0
_BITRATE_PER_CHANNEL = 64_000
_OPUS_RATE = 48_000
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
_ENCODERS = ("aac", "libopus")  # first one the output container can hold wins
# Codecs known to copy cleanly into MP4/MOV (FFmpeg's own codec query also says yes to e.g. pcm_u8,
# which then fails when the header is written). Anything else is re-encoded.
_MP4_COPYABLE = frozenset({"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"})
_MOV_COPYABLE = _MP4_COPYABLE | {"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_f32le"}
# Containers whose edit lists hide audio before time 0 (AAC priming, flagged discard in MP4). Elsewhere
# (Matroska) such a packet would make the muxer shift every stream later, video included, so it is left out.
_EDIT_LIST_MUXERS = ("mp4", "mov")


def validate_audio_mode(mode: str, stretch: float) -> None:
    """ConfigError for an unknown mode or an unusable stretch factor."""
    if mode not in AUDIO_MODES:
        raise ConfigError(f"unknown audio mode {mode!r}: choose one of {', '.join(AUDIO_MODES)}")
    if not isinstance(stretch, (int, float, Fraction)) or not math.isfinite(float(stretch)):
        raise ConfigError(f"audio stretch must be a number, got {stretch!r}")
    if not 1 / _MAX_STRETCH <= float(stretch) <= _MAX_STRETCH:
        raise ConfigError(f"audio stretch {stretch} out of range: use {1 / _MAX_STRETCH:g}..{_MAX_STRETCH:g}")


def atempo_chain(stretch: float) -> list[float]:
    """Tempo factors, each within atempo's 0.5..100, whose product is 1/stretch (4.0 -> [0.5, 0.5])."""
    tempo = 1.0 / float(stretch)
    chain: list[float] = []
    while tempo < _ATEMPO_MIN:
        chain.append(_ATEMPO_MIN)
        tempo /= _ATEMPO_MIN
    while tempo > _ATEMPO_MAX:
        chain.append(_ATEMPO_MAX)
        tempo /= _ATEMPO_MAX
    if not math.isclose(tempo, 1.0, rel_tol=0, abs_tol=1e-12) or not chain:
        chain.append(tempo)
    return chain


def first_audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream | None:
    """The first audio stream with a decoder, or None."""
    for stream in container.streams.audio:
        if stream.codec_context is not None:
            return stream
    return None


def check_audio_decodes(path: str, frames: int = 4) -> None:
    """Stretching re-encodes the audio: a track that cannot be decoded must fail now, not after the
    interpolation. Reads only the first few packets; a file without audio passes."""
    with av.open(path) as container:
        stream = first_audio_stream(container)
        if stream is None:
            return
        decoded = 0
        try:
            for packet in container.demux(stream):
                decoded += len(packet.decode())
                if decoded >= frames:
                    return
        except (av.error.FFmpegError, ValueError) as exc:
            raise InputError(f"{path}: its audio cannot be decoded for --audio stretch ({ffmpeg_reason(exc)}); "
                             "use --audio drop") from None
        if decoded == 0:
            raise InputError(f"{path}: its audio track holds no decodable sound for --audio stretch; use --audio drop")


def video_start_time(container: av.container.InputContainer) -> Fraction:
    """When the source's first video frame is shown, in seconds: the output's time 0."""
    for stream in container.streams.video:
        if stream.start_time is not None and stream.time_base:
            return Fraction(stream.start_time) * stream.time_base
    return Fraction(0)


def add_audio(
    output: av.container.OutputContainer,
    source: av.container.InputContainer,
    *,
    mode: str,
    stretch: float,
    source_path: str,
) -> Iterator[av.Packet] | None:
    """Add the output audio stream (before the header is written); return its packet iterator.

    None when there is nothing to add ("drop", or a source without audio). "copy" falls back to
    re-encoding (at 1x) when the output container cannot hold the source codec.
    """
    validate_audio_mode(mode, stretch)
    stream = first_audio_stream(source)
    if mode == "drop" or stream is None:
        if stream is None and mode != "drop":
            log.info("%s: no audio stream; output is video only", source_path)
        return None
    start = video_start_time(source)
    if mode == "copy":
        if can_copy(stream.codec_context.name, output):
            out_stream = output.add_stream_from_template(stream)
            keep_stream_tags(stream, out_stream)
            skip_before_start = output.format.name not in _EDIT_LIST_MUXERS
            return _copied_packets(source, stream, out_stream, start, source_path, skip_before_start)
        log.info(
            "%s: %s audio cannot be copied into %s; re-encoding it",
            source_path, stream.codec_context.name, output.format.name,
        )
        stretch = 1.0
    out_stream = _add_encoder_stream(output, stream, source_path)
    keep_stream_tags(stream, out_stream)
    return _stretched_packets(source, stream, out_stream, start, float(stretch), source_path)


def can_copy(codec: str, output: av.container.OutputContainer) -> bool:
    """Whether ``codec`` audio packets can go into ``output`` unchanged."""
    if codec not in output.supported_codecs:
        return False
    if output.format.name == "mp4":
        return codec in _MP4_COPYABLE
    if output.format.name == "mov":
        return codec in _MOV_COPYABLE
    return True


def _copied_packets(
    source: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    out_stream: av.audio.stream.AudioStream,
    start: Fraction,
    path: str,
    skip_before_start: bool = False,
) -> Iterator[av.Packet]:
    offset = start / stream.time_base
    if offset.denominator != 1:
        log.warning("%s: video start %s s is not a whole number of audio ticks; rounding", path, float(start))
    shift = round(offset)
    try:
        for packet in source.demux(stream):
            if packet.size == 0 or (packet.pts is None and packet.dts is None):
                continue
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            if skip_before_start and (packet.pts if packet.pts is not None else packet.dts) < 0:
                continue
            packet.stream = out_stream
            yield packet
    except av.error.FFmpegError as err:
        raise InputError(f"{path}: cannot read audio ({ffmpeg_reason(err)})") from err


def _add_encoder_stream(
    output: av.container.OutputContainer, stream: av.audio.stream.AudioStream, path: str
) -> av.audio.stream.AudioStream:
    codec = next((name for name in _ENCODERS if _codec_name(name) in output.supported_codecs), None)
    if codec is None:
        raise ConfigError(f"{path}: the output container holds neither AAC nor Opus audio")
    ctx = stream.codec_context
    rate = _OPUS_RATE if codec == "libopus" else int(ctx.sample_rate)
    layout = _encoder_layout(ctx.layout, ctx.channels)
    if codec == "libopus" and ctx.channels > 2:
        layout = "stereo"
    out_stream = output.add_stream(codec, rate=rate, layout=layout)
    out_stream.codec_context.time_base = Fraction(1, rate)
    out_stream.codec_context.bit_rate = _BITRATE_PER_CHANNEL * max(1, out_stream.codec_context.channels)
    return out_stream


def _encoder_layout(layout: av.AudioLayout | None, channels: int) -> str:
    """A named layout for the encoder: sources such as PCM in Matroska only say "2 channels"."""
    if layout is not None and channels and not layout.name.endswith("channels"):
        return layout.name
    return _DEFAULT_LAYOUTS.get(channels, "stereo")  # more than 8 unnamed channels: downmix


def _codec_name(encoder: str) -> str:
    return {"libopus": "opus"}.get(encoder, encoder)


def _build_graph(
    frame: av.AudioFrame, time_base: Fraction, out_stream: av.audio.stream.AudioStream, stretch: float
) -> av.filter.Graph:
    ctx = out_stream.codec_context
    graph = av.filter.Graph()
    nodes = [
        graph.add_abuffer(
            sample_rate=frame.sample_rate, format=frame.format.name, layout=frame.layout.name, time_base=time_base
        )
    ]
    nodes += [graph.add("atempo", f"{tempo!r}") for tempo in atempo_chain(stretch)]
    nodes.append(
        graph.add(
            "aformat",
            sample_fmts=ctx.format.name, sample_rates=str(ctx.sample_rate), channel_layouts=ctx.layout.name,
        )
    )
    nodes.append(graph.add("abuffersink"))
    graph.link_nodes(*nodes).configure()
    if ctx.frame_size:
        graph.set_audio_frame_size(ctx.frame_size)
    return graph


def _stretched_packets(
    source: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    out_stream: av.audio.stream.AudioStream,
    start: Fraction,
    stretch: float,
    path: str,
) -> Iterator[av.Packet]:
    """Decode, atempo by 1/stretch, re-encode; output pts = (source time - start) * stretch."""
    rate = out_stream.codec_context.sample_rate
    graph: av.filter.Graph | None = None
    next_pts = 0

    def drain() -> Iterator[av.Packet]:
        nonlocal next_pts
        assert graph is not None
        while True:
            try:
                out = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            out.pts = next_pts
            out.time_base = Fraction(1, rate)
            next_pts += out.samples
            yield from out_stream.encode(out)

    try:
        for packet in source.demux(stream):
            for frame in packet.decode():
                if graph is None:
                    time_base = frame.time_base or stream.time_base
                    graph = _build_graph(frame, time_base, out_stream, stretch)
                    first = Fraction(frame.pts) * time_base if frame.pts is not None else start
                    # atempo keeps its own clock from the first input pts; ours counts samples
                    next_pts = round((first - start) * Fraction(stretch) * rate)
                graph.push(frame)
                yield from drain()
        if graph is not None:
            graph.push(None)
            yield from drain()
        yield from out_stream.encode(None)
    except av.error.FFmpegError as err:
        raise InputError(f"{path}: cannot process audio ({ffmpeg_reason(err)})") from err
