"""Subtitles, chapters and tags: what the output carries besides picture and sound.

Subtitles and chapters are timed. In fps mode the duration is kept, so they are copied unchanged. In slow
motion they are stretched by the factor N: a line shown for 2 s is shown for 2N s, over the same pictures.
They can also be dropped, which the job report says. Global tags (title, creation time, comment...) and
language tags do not depend on timing and are kept in every mode.

Text subtitles that the output container cannot hold as they are (MP4's mov_text into Matroska, SubRip into
MP4) are re-encoded with PyAV's subtitle encoder: mov_text in MP4/MOV, SubRip in Matroska. Their styling
may be simplified; their text and times are kept. Bitmap subtitles (DVD, PGS) go only where their codec can
be stored, and are otherwise dropped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction

import av
import av.container
import av.error
import av.stream
import av.subtitles.stream
from av.subtitles.subtitle import SubtitleSet

from slomo_core.errors import InputError
from slomo_core.video.probe import VideoInfo, ffmpeg_reason, source_metadata

log = logging.getLogger(__name__)

_TEXT_CODECS = frozenset({"mov_text", "subrip", "ass", "ssa", "webvtt", "text"})
_TEXT_ENCODER = {"mp4": "mov_text", "mov": "mov_text", "matroska": "subrip"}  # text subtitles re-encoded to
_STREAM_TAGS = ("language", "title")
_SUBTITLE_CLOCK = Fraction(1, 1000)  # re-encoded subtitles are timed in milliseconds
# FFmpeg's default ASS header (libavcodec/ass.c): text subtitle encoders need one to parse their input.
_ASS_HEADER = (
    "[Script Info]\r\nScriptType: v4.00+\r\nPlayResX: 384\r\nPlayResY: 288\r\nScaledBorderAndShadow: yes\r\n\r\n"
    "[V4+ Styles]\r\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, "
    "Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
    "MarginL, MarginR, MarginV, Encoding\r\nStyle: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,"
    "1,1,0,2,10,10,10,1\r\n\r\n[Events]\r\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, "
    "Effect, Text\r\n"
).encode()


def describe_side_streams(info: VideoInfo, mode: str, stretch: float) -> str:
    """One line for the job report: what became of the source's subtitles and chapters."""
    found = [f"{n} {what}" for n, what in ((len(info.subtitles), "subtitle stream(s)"), (info.chapters, "chapter(s)"))
             if n]
    if not found:
        return "none in the source"
    listed = " and ".join(found)
    return {"copy": f"{listed} copied", "stretch": f"{listed} stretched x{stretch:g}",
            "drop": f"{listed} dropped (--subtitles drop)"}[mode]


def _factor(mode: str, stretch: float) -> Fraction:
    return Fraction(stretch) if mode == "stretch" else Fraction(1)


def keep_stream_tags(source: av.stream.Stream, output: av.stream.Stream) -> None:
    """The language (and title) of a stream follow it into the output."""
    for key in _STREAM_TAGS:
        value = source.metadata.get(key)
        if value:
            output.metadata[key] = value


def keep_global_tags(source: av.container.InputContainer, output: av.container.OutputContainer) -> None:
    """Title, creation time, comment... as the source has them (set before the header is written)."""
    output.metadata.update(source_metadata(source))


def retimed_chapters(source: av.container.InputContainer, mode: str, stretch: float, start: Fraction) -> list[dict]:
    """The source's chapters on the output's clock: shifted so the first video frame is 0, stretched by N
    in slowmo; none for "drop". Chapters that end before the video starts are left out."""
    if mode == "drop":
        return []
    factor = _factor(mode, stretch)
    chapters = []
    for chapter in source.chapters():
        tb = Fraction(chapter["time_base"])
        shift = start / tb
        begin, end = max(Fraction(0), chapter["start"] - shift), chapter["end"] - shift
        if end <= 0:
            continue
        chapters.append({"id": len(chapters) + 1, "start": round(begin * factor), "end": round(end * factor),
                         "time_base": tb, "metadata": dict(chapter["metadata"])})
    return chapters


def add_subtitle_stream(
    output: av.container.OutputContainer,
    source: av.container.InputContainer,
    index: int,
    *,
    mode: str,
    stretch: float,
    start: Fraction,
    source_path: str,
) -> Iterator[av.Packet] | None:
    """Add the output stream for subtitle stream ``index`` (before the header); return its packets.

    ``source`` must be this stream's own container (packets are demuxed from it alone). None when the
    stream is dropped: mode "drop", or a bitmap codec the output container cannot hold.
    """
    if mode == "drop":
        return None
    stream = source.streams.subtitles[index]
    factor = _factor(mode, stretch)
    codec = stream.codec_context.codec.canonical_name if stream.codec_context else "unknown"
    if codec in output.supported_codecs:
        out = output.add_stream_from_template(stream)
        keep_stream_tags(stream, out)
        return _copied(source, stream, out, start, factor, source_path)
    target = _TEXT_ENCODER.get(output.format.name)
    if codec in _TEXT_CODECS and target is not None:
        out = output.add_stream(target)
        out.codec_context.time_base = _SUBTITLE_CLOCK
        out.codec_context.subtitle_header = stream.codec_context.subtitle_header or _ASS_HEADER
        keep_stream_tags(stream, out)
        log.info("%s: %s subtitles re-encoded as %s for %s", source_path, codec, target, output.format.name)
        return _reencoded(source, stream, out, start, factor, source_path)
    log.warning("%s: %s subtitles (stream #%d) cannot be stored in %s; dropped", source_path, codec, stream.index,
                output.format.name)
    return None


def _copied(
    source: av.container.InputContainer,
    stream: av.subtitles.stream.SubtitleStream,
    out: av.stream.Stream,
    start: Fraction,
    factor: Fraction,
    path: str,
) -> Iterator[av.Packet]:
    """Packets unchanged but for their times: shifted to the output's 0, times ``factor`` (integers)."""
    shift = round(start / stream.time_base)
    try:
        for packet in source.demux(stream):
            if packet.size == 0 or packet.pts is None or packet.pts < shift:
                continue
            packet.pts = int((packet.pts - shift) * factor)
            packet.dts = packet.pts
            packet.duration = int(packet.duration * factor)
            packet.stream = out
            yield packet
    except av.error.FFmpegError as err:
        raise InputError(f"{path}: cannot read subtitles ({ffmpeg_reason(err)})") from err


def _reencoded(
    source: av.container.InputContainer,
    stream: av.subtitles.stream.SubtitleStream,
    out: av.stream.Stream,
    start: Fraction,
    factor: Fraction,
    path: str,
) -> Iterator[av.Packet]:
    """Each cue decoded to its ASS event and encoded again in the output's text format, in milliseconds."""
    try:
        for packet in source.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            begin = (packet.pts * stream.time_base - start) * factor
            if begin < 0:
                continue
            cues = stream.codec_context.decode2(packet)
            for cue in cues or ():
                text = getattr(cue, "ass", b"")
                if not text:
                    continue
                length = round(packet.duration * stream.time_base * factor / _SUBTITLE_CLOCK)
                encoded = out.codec_context.encode_subtitle(
                    SubtitleSet.create(text, 0, length, round(begin / _SUBTITLE_CLOCK)))
                encoded.time_base = _SUBTITLE_CLOCK
                encoded.stream = out
                yield encoded
    except av.error.FFmpegError as err:
        raise InputError(f"{path}: cannot convert subtitles ({ffmpeg_reason(err)})") from err
