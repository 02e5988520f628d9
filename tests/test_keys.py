"""Where outputs may land: keys relative to the input prefix, hostile keys refused, output never the input."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import pytest
import s3fs

from flows.cli import main
from slomo_core.errors import OutputError
from slomo_core.keys import (
    UnsafeKeyError,
    check_name,
    common_prefix,
    is_under,
    output_for,
    refuse_same_object,
    relative_key,
    same_object,
)
from slomo_core.plan import ChunkLength, JobLayout, JobSettings, plan_job
from slomo_core.storage import identity, upload
from slomo_core.timestamps import RateSpec

from clips import make_clip, moving_square_frames


def test_relative_local_prefix_from_inside_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's repro: in folder `arch`, `slomo archive in out2` must write out2/a.mp4."""
    (tmp_path / "arch" / "in" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "arch")
    listed = str(tmp_path / "arch" / "in" / "sub" / "a.mp4")  # what the local filesystem lists: absolute
    assert output_for(listed, "in", "out2") == os.path.join("out2", "sub", "a.mp4")
    assert output_for(listed, "./in/", "out2", "_x2") == os.path.join("out2", "sub", "a_x2.mp4")
    monkeypatch.chdir(tmp_path)  # from the parent: `slomo archive arch/in arch/out`
    assert output_for(listed, "arch/in", "arch/out") == os.path.join("arch/out", "sub", "a.mp4")
    assert output_for(listed, str(tmp_path / "arch" / "in"), "/o") == "/o/sub/a.mp4"
    assert output_for("file://" + listed, "file://" + str(tmp_path / "arch" / "in"), "/o") == "/o/sub/a.mp4"


@pytest.mark.parametrize("prefix", ["s3://cams/raw", "s3://cams/raw/", "s3a://cams/raw"])
def test_relative_url_prefix(prefix: str) -> None:
    assert relative_key("s3://cams/raw/day1/b.mp4", prefix) == "day1/b.mp4"
    assert output_for("s3://cams/raw/day1/b.mp4", prefix, "s3://cams/slow/", "_x4") == "s3://cams/slow/day1/b_x4.mp4"
    with pytest.raises(UnsafeKeyError, match="not under the input prefix"):
        relative_key("s3://cams/rawer/b.mp4", prefix)


@pytest.mark.parametrize(("key", "reason"), [
    ("arch/../../evil.mp4", "'..'"),
    ("arch/./dot.mp4", "'.'"),
    ("arch//abs.mp4", "absolute path"),
    ("arch/d//e.mp4", "empty segment"),
    ("arch/x\\..\\y.mp4", "backslash"),
    ("arch/nul\x00.mp4", "control character"),
    ("arch/bell\x07.mp4", "control character"),
    ("arch/line\nbreak.mp4", "control character"),
])
def test_hostile_keys_are_rejected(key: str, reason: str) -> None:
    with pytest.raises(UnsafeKeyError, match=reason) as caught:
        output_for(f"s3://b/{key}", "s3://b/arch", "/srv/out")
    assert "\n" not in str(caught.value)  # one line, the key shown escaped


def test_local_keys_with_control_characters_and_escaping_suffix(tmp_path: Path) -> None:
    with pytest.raises(UnsafeKeyError, match="control character"):
        output_for(str(tmp_path / "in" / "a\x1b.mp4"), str(tmp_path / "in"), str(tmp_path / "out"))
    with pytest.raises(UnsafeKeyError, match="not under the input prefix"):
        output_for(str(tmp_path / "in" / ".." / "x.mp4"), str(tmp_path / "in"), str(tmp_path / "out"))
    with pytest.raises(UnsafeKeyError):
        output_for(str(tmp_path / "in" / "a.mp4"), str(tmp_path / "in"), str(tmp_path / "out"), suffix="/../../x")


def test_common_prefix_and_containment() -> None:
    assert common_prefix(["s3://b/x/1/a.mp4", "s3://b/x/2/c.mp4"]) == "s3://b/x"
    assert common_prefix(["/d/x/a.mp4"]) == "/d/x"
    assert is_under("s3://b/out/a.mp4", "s3://b/out") and not is_under("s3://b/out/../a.mp4", "s3://b/out")
    assert not is_under("/srv/outside.mp4", "/srv/out") and not is_under("s3://b/out", "s3://b/out")


def test_job_and_attempt_names_cannot_leave_the_job_folder() -> None:
    assert check_name("0123abcd", "job id") == "0123abcd"
    for name in ("..", "a/b", "", "x\x00"):
        with pytest.raises(OutputError, match="not a plain name"):
            check_name(name, "job id")
    with pytest.raises(OutputError, match="attempt"):
        JobLayout("/w/job").segment(0, "../../../escape")


def test_same_object_locally_follows_symlinks_and_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "in.mp4"
    source.write_bytes(b"video")
    (tmp_path / "hard.mp4").hardlink_to(source)
    (tmp_path / "soft.mp4").symlink_to(source)
    (tmp_path / "linked-dir").symlink_to(tmp_path, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for alias in ("in.mp4", "./in.mp4", "hard.mp4", "soft.mp4", str(tmp_path / "linked-dir" / "in.mp4"),
                  "file://" + str(source)):
        assert same_object(str(source), alias), alias
        with pytest.raises(OutputError, match="overwrite the input"):
            refuse_same_object(str(source), alias)
    (tmp_path / "other.mp4").write_bytes(b"video")
    assert not same_object(str(source), "other.mp4") and not same_object(str(source), "missing.mp4")


def test_same_object_on_s3(s3_bucket) -> None:
    bucket, options = s3_bucket
    fs = s3fs.S3FileSystem(**options)
    fs.pipe(f"{bucket[5:]}/same/ok.mp4", b"source bytes")
    fs.pipe(f"{bucket[5:]}/same/copy.mp4", b"source bytes")
    fs.pipe(f"{bucket[5:]}/same/other.mp4", b"other bytes")
    source = f"{bucket}/same/ok.mp4"
    assert same_object(source, source, options)
    assert same_object(source, "s3a://" + bucket[5:] + "/same/ok.mp4", options)
    assert same_object(source, f"{bucket}/same/copy.mp4", options)  # same ETag and size: never replaced
    assert not same_object(source, f"{bucket}/same/other.mp4", options)
    assert not same_object(source, f"{bucket}/same/new.mp4", options)


def test_planning_refuses_output_equal_to_input_on_s3(tmp_path: Path, s3_bucket) -> None:
    bucket, options = s3_bucket
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(3, 32, 32), [0, 1, 2], Fraction(1, 25))
    upload(src, f"{bucket}/v/in.mp4", options)
    with pytest.raises(OutputError, match="overwrite the input"):
        plan_job(f"{bucket}/v/in.mp4", f"{bucket}/v/in.mp4", f"{bucket}/work", JobSettings(RateSpec("fps", factor=2)),
                 ChunkLength(), cache_dir=str(tmp_path / "cache"), options=options)


def test_cli_overwrite_never_replaces_an_s3_source(tmp_path: Path, s3_server, s3_bucket,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's exact repro: same s3 URL in and out with --overwrite, on the default and --local paths."""
    bucket, options = s3_bucket
    src = make_clip(str(tmp_path / "ok.mp4"), moving_square_frames(5, 48, 32), list(range(5)), Fraction(1, 25))
    url = f"{bucket}/same/ok.mp4"
    upload(src, url, options)
    before = identity(url, options)
    fs = s3fs.S3FileSystem(**options)
    original = fs.cat(url[5:])
    for extra in ([], ["--local"]):
        code = main(["convert", url, url, "--factor", "2", "--overwrite", "--s3-endpoint", s3_server["endpoint"],
                     "-q", *extra])
        # (werkzeug lines are the in-process moto server's request log, not slomo's output)
        err = [line for line in capsys.readouterr().err.splitlines() if "werkzeug" not in line]
        assert code == 1 and len(err) == 1 and err[0].startswith("slomo: error: "), err
        assert "overwrite the input" in err[0]
        assert identity(url, options) == before and fs.cat(url[5:]) == original
