"""Flows end to end: Prefect (test harness) + real Ray actors + s3fs against moto's S3 server."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import s3fs

from flows.convert import convert_video
from slomo_core.settings import ConversionSettings
from slomo_core.storage import download, upload
from slomo_core.video.probe import probe, read_frame_timestamps

from clips import make_clip, moving_square_frames

pytestmark = pytest.mark.usefixtures("ray_session", "prefect_harness")


def test_convert_flow_s3_in_s3_out(tmp_path: Path, s3_bucket) -> None:
    bucket, options = s3_bucket
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(13, 64, 48), list(range(13)), Fraction(1, 12),
                    audio=True, gop_size=4)
    upload(src, f"{bucket}/in/clip.mp4", options)
    summary = convert_video(f"{bucket}/in/clip.mp4", f"{bucket}/out/clip_x2.mp4",
                            ConversionSettings(factor=2, mode="fps", chunk_frames=4, workers=2), storage_options=options)
    assert summary["chunks"] == 3 and summary["output_frames"] == 25 and summary["chunks_resumed"] == 0
    stages = summary["stage_seconds"]  # summed from the three commit markers, shown in the job report
    assert {"download", "decode", "scene", "model", "encode", "upload"} <= set(stages) and stages["model"] > 0
    download(f"{bucket}/out/clip_x2.mp4", str(tmp_path / "out.mp4"), options)
    assert len(read_frame_timestamps(str(tmp_path / "out.mp4"))) == 25
    assert probe(str(tmp_path / "out.mp4")).audio is not None
    fs = s3fs.S3FileSystem(**options)
    work = f"{bucket[5:]}/out/.slomo-work/{summary['job_id']}"
    assert fs.exists(f"{work}/manifest.parquet") and fs.exists(f"{work}/DONE.json")
    assert len(fs.ls(f"{work}/commits")) == 3 and len(fs.ls(f"{work}/status")) == 3
    again = convert_video(f"{bucket}/in/clip.mp4", f"{bucket}/out/clip_x2.mp4",
                          ConversionSettings(factor=2, mode="fps", chunk_frames=4, workers=2), storage_options=options)
    assert again["chunks_resumed"] == 3 and again["job_id"] == summary["job_id"]
    assert summary["audio_mode"] == "copy" and len(summary["workers"]) >= 1 and again["workers"] == []


def test_archive_flow_twice_converts_each_video_once(tmp_path: Path, s3_bucket) -> None:
    from flows.archive import convert_archive

    bucket, options = s3_bucket
    for n, name in enumerate(["a.mp4", "day1/b.mp4", "day2/c.mp4"]):
        src = make_clip(str(tmp_path / f"v{n}.mp4"), moving_square_frames(5 + n, 48, 32, seed=n), list(range(5 + n)),
                        Fraction(1, 25))
        upload(src, f"{bucket}/archive/{name}", options)
    upload(str(tmp_path / "v0.mp4"), f"{bucket}/archive/notes.txt", options)  # not matched by the pattern
    first = convert_archive(f"{bucket}/archive", f"{bucket}/slow", ConversionSettings(factor=2, workers=2),
                            storage_options=options)
    assert sorted(r["status"] for r in first) == ["converted"] * 3
    fs = s3fs.S3FileSystem(**options)
    outputs = sorted(p for p in fs.find(f"{bucket[5:]}/slow") if p.endswith(".mp4") and "/.slomo-work/" not in p)
    assert outputs == [f"{bucket[5:]}/slow/{n}" for n in ("a.mp4", "day1/b.mp4", "day2/c.mp4")]
    second = convert_archive(f"{bucket}/archive", f"{bucket}/slow", ConversionSettings(factor=2, workers=2),
                            storage_options=options)
    assert sorted(r["status"] for r in second) == ["skipped (done)"] * 3
    # A new video arrives: only it is converted.
    upload(str(tmp_path / "v1.mp4"), f"{bucket}/archive/day3/d.mp4", options)
    third = convert_archive(f"{bucket}/archive", f"{bucket}/slow", ConversionSettings(factor=2, workers=2),
                            storage_options=options)
    assert sorted(r["status"] for r in third) == ["converted"] + ["skipped (done)"] * 3


def test_backfill_by_name_range_in_groups(tmp_path: Path) -> None:
    from flows.archive import backfill

    for day in ("2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"):
        folder = tmp_path / "cams" / day
        folder.mkdir(parents=True)
        make_clip(str(folder / "cam.mp4"), moving_square_frames(4, 48, 32), list(range(4)), Fraction(1, 25))
    rows = backfill(str(tmp_path / "out"), input_prefix=str(tmp_path / "cams"), start_at="2026-11-02",
                    end_before="2026-11-04", videos_per_pool=1, settings=ConversionSettings(factor=2))
    assert sorted(Path(r["output"]).parent.name for r in rows) == ["2026-11-02", "2026-11-03"]
    assert all(r["status"] == "converted" for r in rows)
    explicit = backfill(str(tmp_path / "out"), sources=[str(tmp_path / "cams" / "2026-11-02" / "cam.mp4"),
                                                        str(tmp_path / "cams" / "2026-11-04" / "cam.mp4")],
                        settings=ConversionSettings(factor=2))
    assert sorted(r["status"] for r in explicit) == ["converted", "skipped (done)"]
    with pytest.raises(ValueError, match="either sources or input_prefix"):
        backfill(str(tmp_path / "out"), ConversionSettings(factor=2))


def test_archive_group_shares_one_pool_and_a_bad_video_fails_alone(tmp_path: Path) -> None:
    import json

    from flows.archive import convert_archive

    archive = tmp_path / "archive"
    archive.mkdir()
    for n in range(3):
        make_clip(str(archive / f"v{n}.mp4"), moving_square_frames(9, 48, 32, seed=n), list(range(9)),
                  Fraction(1, 25), gop_size=4)
    (archive / "broken.mp4").write_text("not a video")
    with pytest.raises(RuntimeError, match="1 of 4 video"):
        convert_archive(str(archive), str(tmp_path / "slow"), ConversionSettings(factor=2, workers=2, chunk_frames=4))
    assert sorted(p.name for p in (tmp_path / "slow").glob("*.mp4")) == ["v0.mp4", "v1.mp4", "v2.mp4"]
    markers = list((tmp_path / "slow" / ".slomo-work").glob("*/commits/*.json"))
    assert len(markers) == 6  # 3 videos x 2 chunks
    # One pool for the group: every chunk of every video ran on one of the same two actors.
    assert len({json.loads(m.read_text())["worker"] for m in markers}) <= 2


def test_archive_relative_paths_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`slomo archive in out2` inside a folder and `slomo archive arch/in arch/out` from its parent write
    out2/a.mp4 and arch/out/a.mp4, nothing of the absolute path inside the output."""
    from flows.cli import main

    (tmp_path / "arch" / "in" / "sub").mkdir(parents=True)
    for name in ("a.mp4", "sub/b.mp4"):
        make_clip(str(tmp_path / "arch" / "in" / name), moving_square_frames(3, 32, 32), [0, 1, 2], Fraction(1, 25))
    monkeypatch.chdir(tmp_path / "arch")
    assert main(["archive", "in", "out2", "--factor", "2", "-q"]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["archive", "arch/in", "arch/out", "--factor", "2", "-q"]) == 0
    for out in ("out2", "out"):
        videos = sorted(str(p.relative_to(tmp_path / "arch" / out)) for p in (tmp_path / "arch" / out).rglob("*.mp4")
                        if ".slomo-work" not in p.parts)
        assert videos == ["a.mp4", "sub/b.mp4"], videos


def test_archive_rejects_hostile_keys_one_by_one_and_converts_the_rest(tmp_path: Path, s3_bucket) -> None:
    """A bucket holding `..` and control-character keys: those are refused by name, nothing lands above the
    output root, and the ordinary video is converted."""
    import boto3

    from flows.archive import BatchFailedError, convert_archive

    bucket, options = s3_bucket
    src = make_clip(str(tmp_path / "v.mp4"), moving_square_frames(3, 32, 32), [0, 1, 2], Fraction(1, 25))
    client = boto3.client("s3", endpoint_url=options["client_kwargs"]["endpoint_url"])
    hostile = ["archive/../../evil.mp4", "archive/x\\y.mp4", "archive/bell\x07.mp4"]
    for key in ["archive/ok.mp4", *hostile]:
        client.upload_file(src, bucket[5:], key)
    root = tmp_path / "deep" / "er" / "out"
    root.mkdir(parents=True)
    with pytest.raises(BatchFailedError, match="3 of 4 video") as caught:
        convert_archive(f"{bucket}/archive", str(root), ConversionSettings(factor=2), storage_options=options)
    message = str(caught.value)
    assert "'..' segment" in message and "backslash" in message and "control character" in message
    assert (root / "ok.mp4").exists()
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.mp4") if ".slomo-work" not in p.parts)
    assert written == ["deep/er/out/ok.mp4", "v.mp4"], written
