"""Side streams (issue 9, item 5): subtitles, chapters, tags, language, pixel shape, field order."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.subtitles.subtitle import SubtitleSet

from flows.cli import main
from slomo_core.convert import ConvertOptions, convert_locally
from slomo_core.errors import ConfigError, InputError
from slomo_core.interp.dis import DISInterpolator
from slomo_core.plan import JobSettings
from slomo_core.settings import ConversionSettings
from slomo_core.timestamps import RateSpec
from slomo_core.video.probe import probe, read_frame_timestamps

from clips import moving_square_frames

TAGS = {"title": "Harbour, 1987", "creation_time": "1987-06-05T04:03:02.000000Z", "comment": "reel 4"}
CUES = [(40, 160, "Hello"), (200, 320, "World")]  # (start ms, end ms, text)
CHAPTERS = [(0, 200, "Arrival"), (200, 400, "Departure")]
SUBTITLE_CODEC = {".mp4": "mov_text", ".mov": "mov_text", ".mkv": "subrip"}
ASS_HEADER = (  # white text, bottom centre: what FFmpeg's text subtitle encoders expect to parse
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n[V4+ Styles]\nFormat: Name, Fontname, "
    b"Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, "
    b"ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1\n\n[Events]\n"
    b"Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n")


def make_tagged_clip(path: Path, *, frames: int = 10, subtitles: bool = True, chapters: bool = True,
                     sar: Fraction | None = None, interlaced: bool = False) -> str:
    """A 25 fps clip with tags, a French video and a German audio track, English subtitles and chapters."""
    ext = path.suffix
    options = {"video_track_timescale": "25"} if ext in (".mp4", ".mov") else {}
    encoder = {"preset": "ultrafast", "bf": "0"}
    if interlaced:
        encoder["x264-params"] = "interlaced=1:tff=1"
    with av.open(str(path), "w", options=options) as out:
        out.metadata.update(TAGS)
        video = out.add_stream("libx264", rate=25, options=encoder)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        video.time_base = Fraction(1, 25)
        video.metadata["language"] = "fra"
        video.codec_context.field_order = 2 if interlaced else 1  # AVFieldOrder: top first / progressive
        if sar:
            video.codec_context.sample_aspect_ratio = sar
        audio = out.add_stream("aac", rate=48000, layout="stereo")
        audio.metadata["language"] = "deu"
        sub = None
        if subtitles:
            sub = out.add_stream(SUBTITLE_CODEC[ext])
            sub.metadata["language"] = "eng"
            sub.codec_context.time_base = Fraction(1, 1000)
            sub.codec_context.subtitle_header = ASS_HEADER
        if chapters:
            out.set_chapters([{"id": n + 1, "start": a, "end": b, "time_base": Fraction(1, 1000), "metadata": {"title": t}}
                              for n, (a, b, t) in enumerate(CHAPTERS)])
        for i, image in enumerate(moving_square_frames(frames, 32, 32)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        for i in range(frames * 48000 // 25 // 1024):
            sound = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            sound.sample_rate, sound.pts, sound.time_base = 48000, i * 1024, Fraction(1, 48000)
            out.mux(audio.encode(sound))
        out.mux(audio.encode())
        for n, (start, end, text) in enumerate(CUES if sub is not None else []):
            packet = sub.codec_context.encode_subtitle(
                SubtitleSet.create(f"{n},0,Default,,0,0,0,,{text}".encode(), 0, end - start, start))
            packet.stream, packet.time_base = sub, Fraction(1, 1000)
            out.mux(packet)
    return str(path)


def side_facts(path: str) -> dict:
    """What a player sees besides the picture: tags, languages, cues (ms, ms, text) and chapters (ms, ms, title)."""
    with av.open(path) as container:
        facts = {
            # Matroska spells tags in capitals (COMMENT): the same tag to a player
            "tags": {k.lower(): v for k, v in container.metadata.items() if k.lower() in TAGS},
            "video_language": container.streams.video[0].metadata.get("language"),
            "audio_language": [s.metadata.get("language") for s in container.streams.audio],
            "chapters": [(round(c["start"] * c["time_base"] * 1000), round(c["end"] * c["time_base"] * 1000),
                          c["metadata"].get("title")) for c in container.chapters()],
            "subtitle_languages": [s.metadata.get("language") for s in container.streams.subtitles],
        }
        cues = []
        for stream in container.streams.subtitles:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                for cue in stream.codec_context.decode2(packet) or ():
                    begin = round(packet.pts * stream.time_base * 1000)
                    cues.append((begin, begin + round(packet.duration * stream.time_base * 1000), cue.dialogue.decode()))
        facts["cues"] = cues
    return facts


def _convert(src: str, out: Path, spec: RateSpec, **settings) -> str:
    convert_locally(src, str(out), DISInterpolator(), ConvertOptions(spec, **settings))
    return str(out)


def test_the_source_clip_has_what_the_tests_look_for(tmp_path: Path) -> None:
    facts = side_facts(make_tagged_clip(tmp_path / "in.mp4"))
    assert facts["cues"] == [(40, 160, "Hello"), (200, 320, "World")] and facts["chapters"] == [
        (0, 200, "Arrival"), (200, 400, "Departure")]
    assert facts["tags"] == TAGS and facts["video_language"] == "fra" and facts["audio_language"] == ["deu"]


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_fps_mode_copies_subtitles_chapters_and_tags_unchanged(tmp_path: Path, ext: str) -> None:
    src = make_tagged_clip(tmp_path / f"in{ext}")
    out = _convert(src, tmp_path / f"out{ext}", RateSpec("fps", factor=2))
    assert side_facts(out) == side_facts(src)
    assert side_facts(out)["subtitle_languages"] == ["eng"]


def test_slowmo_stretches_subtitles_and_chapters_by_n_and_keeps_tags(tmp_path: Path) -> None:
    src = make_tagged_clip(tmp_path / "in.mkv")
    report = convert_locally(src, str(tmp_path / "slow.mkv"), DISInterpolator(),
                             ConvertOptions(RateSpec("slowmo", factor=4), audio_mode="stretch"))
    facts = side_facts(str(tmp_path / "slow.mkv"))
    assert facts["cues"] == [(160, 640, "Hello"), (800, 1280, "World")]
    assert facts["chapters"] == [(0, 800, "Arrival"), (800, 1600, "Departure")]
    assert facts["tags"] == TAGS and facts["audio_language"] == ["deu"]  # re-encoded audio keeps its language
    assert report.subtitles == "1 subtitle stream(s) and 2 chapter(s) stretched x4"


def test_slowmo_drop_removes_them_and_says_so(tmp_path: Path, capsys) -> None:
    src = make_tagged_clip(tmp_path / "in.mp4")
    out = tmp_path / "slow.mp4"
    assert main(["convert", src, str(out), "--factor", "2", "--subtitles", "drop", "--local", "-q"]) == 0
    assert "1 subtitle stream(s) and 2 chapter(s) dropped (--subtitles drop)" in capsys.readouterr().out
    facts = side_facts(str(out))
    assert facts["cues"] == [] and facts["chapters"] == [] and facts["subtitle_languages"] == []
    assert facts["tags"] == TAGS and facts["video_language"] == "fra"


@pytest.mark.parametrize("source_ext, output_ext", [(".mp4", ".mkv"), (".mkv", ".mov")])
def test_text_subtitles_change_format_between_containers(tmp_path: Path, source_ext: str, output_ext: str) -> None:
    src = make_tagged_clip(tmp_path / f"in{source_ext}")
    out = _convert(src, tmp_path / f"out{output_ext}", RateSpec("fps", factor=2))
    with av.open(out) as container:
        assert container.streams.subtitles[0].codec_context.codec.canonical_name == SUBTITLE_CODEC[output_ext]
    facts = side_facts(out)
    assert facts["cues"] == side_facts(src)["cues"] and facts["subtitle_languages"] == ["eng"]
    assert facts["chapters"] == side_facts(src)["chapters"]


def test_a_source_without_side_streams_says_nothing_about_them(tmp_path: Path, capsys) -> None:
    src = make_tagged_clip(tmp_path / "in.mp4", subtitles=False, chapters=False)
    assert main(["convert", src, str(tmp_path / "out.mp4"), "--factor", "2", "--local", "-q"]) == 0
    assert "subtitle" not in capsys.readouterr().out
    assert side_facts(str(tmp_path / "out.mp4"))["tags"] == TAGS


def test_subtitle_mode_rules() -> None:
    assert JobSettings(RateSpec("fps", factor=2)).resolved_subtitle_mode() == "copy"
    assert JobSettings(RateSpec("slowmo", factor=2)).resolved_subtitle_mode() == "stretch"
    with pytest.raises(ConfigError, match="cannot be copied unchanged into slow motion"):
        JobSettings(RateSpec("slowmo", factor=2), subtitle_mode="copy").validate()
    with pytest.raises(ConfigError, match="only applies to slowmo"):
        ConversionSettings.from_values(fps="60", subtitles="stretch")
    assert ConversionSettings.from_values(factor=2, subtitles="drop").job_settings().subtitle_mode == "drop"


def test_sample_aspect_ratio_and_progressive_flag_are_kept(tmp_path: Path) -> None:
    src = make_tagged_clip(tmp_path / "in.mp4", sar=Fraction(4, 3))
    assert probe(src).sample_aspect_ratio == Fraction(4, 3) and probe(src).field_order == "progressive"
    for ext in (".mp4", ".mkv"):
        out = _convert(src, tmp_path / f"out{ext}", RateSpec("fps", factor=2))
        info = probe(out)
        assert (info.sample_aspect_ratio, info.field_order) == (Fraction(4, 3), "progressive"), ext
        with av.open(out) as container:
            next(container.decode(video=0))
            assert container.streams.video[0].codec_context.sample_aspect_ratio == Fraction(4, 3)  # the bitstream's


def test_interlaced_source_is_refused_in_one_line_before_any_work(tmp_path: Path, capsys) -> None:
    src = make_tagged_clip(tmp_path / "tff.mkv", interlaced=True)
    assert probe(src).field_order == "tt"
    out = tmp_path / "out.mp4"
    assert main(["convert", src, str(out), "--factor", "2", "--local", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"slomo: error: {src}: interlaced video (top field first) is not supported; "
                   "deinterlace it first (for example ffmpeg -vf bwdif)"]
    assert not out.exists()
    with pytest.raises(InputError, match="interlaced"):
        _convert(src, out, RateSpec("fps", factor=2))


def test_probe_prints_side_stream_facts(tmp_path: Path, capsys) -> None:
    src = make_tagged_clip(tmp_path / "in.mkv", sar=Fraction(16, 15))
    assert main(["probe", src]) == 0
    lines = {line.split()[0]: line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()}
    assert lines["subtitles"] == "subrip (eng)" and lines["chapters"] == "2"
    assert lines["field_order"] == "progressive" and lines["sample_aspect_ratio"] == "16/15"
    assert "language=deu" in lines["audio"]
    assert "title=Harbour, 1987" in lines["metadata"] and "creation_time=1987-06-05T04:03:02" in lines["metadata"]
    assert len(read_frame_timestamps(src)) == 10


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_flow_stretches_side_streams_across_chunks_and_reports_it(tmp_path: Path, capsys) -> None:
    src = make_tagged_clip(tmp_path / "in.mp4")
    out = tmp_path / "slow.mkv"
    assert main(["convert", src, str(out), "--factor", "2", "--chunk-frames", "3", "-q"]) == 0
    assert "1 subtitle stream(s) and 2 chapter(s) stretched x2" in capsys.readouterr().out
    facts = side_facts(str(out))
    assert facts["cues"] == [(80, 320, "Hello"), (400, 640, "World")]
    assert facts["chapters"] == [(0, 400, "Arrival"), (400, 800, "Departure")]
    assert facts["tags"] == TAGS and facts["video_language"] == "fra" and facts["subtitle_languages"] == ["eng"]
    assert read_frame_timestamps(str(out)) == [40 * k for k in range(19)]
