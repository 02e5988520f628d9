"""Credentials stay out of flow parameters, Prefect's database and every artefact of a run."""

from __future__ import annotations

import os
import stat
from fractions import Fraction
from pathlib import Path

import pytest
import s3fs

from flows.cli import main
from slomo_core.credentials import credential_names, refuse_credentials
from slomo_core.errors import ConfigError
from slomo_core.settings import ConversionSettings
from slomo_core.storage import upload

from clips import make_clip, moving_square_frames

MARKER = "sekrit-7f3c1d9a"  # a fake secret value that must appear nowhere a run writes


def test_credential_names_are_found_at_any_depth() -> None:
    options = {"key": "AKIA", "secret": "s", "anon": False, "token": None,
               "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "aws_secret_access_key": "x"}}
    assert credential_names(options) == ["key", "secret", "client_kwargs.aws_secret_access_key"]
    assert credential_names({"client_kwargs": {"endpoint_url": "http://h"}, "anon": True}) == []
    with pytest.raises(ConfigError, match=r"key, secret hold credentials.*AWS_ACCESS_KEY_ID"):
        refuse_credentials({"key": "a", "secret": "b"}, "somewhere")


def test_cli_refuses_credentials_as_options_before_prefect_starts(tmp_path: Path, capsys) -> None:
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(5, 32, 32), list(range(5)), Fraction(1, 10))
    code = main(["convert", src, str(tmp_path / "out.mp4"), "--factor", "2", "--quiet",
                 "--storage-option", f"secret={MARKER}", "--storage-option", "key=AKIAFAKE"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "hold credentials" in err[0] and "AWS_SECRET_ACCESS_KEY" in err[0]
    assert MARKER not in err[0]
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_flows_refuse_credentials_in_parameters(tmp_path: Path) -> None:
    from flows.convert import convert_video

    # A direct or deployment run has its parameters recorded before the flow body runs: the run is refused,
    # so no credential given this way is ever used (the CLI refuses them before Prefect starts).
    with pytest.raises(ConfigError, match="hold credentials"):
        convert_video(str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4"), ConversionSettings(factor=2),
                      storage_options={"client_kwargs": {"aws_session_token": "not-the-marker"}})


@pytest.mark.usefixtures("ray_session", "prefect_harness")
def test_an_s3_run_writes_its_credentials_nowhere(tmp_path: Path, s3_bucket, monkeypatch) -> None:
    """Credentials come from the environment; afterwards, Prefect's database and every object the run wrote
    are searched for them."""
    from prefect.settings import get_current_settings

    from flows.convert import convert_video

    bucket, options = s3_bucket
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MARKER)  # the driver's s3fs signs with it (moto accepts any)
    src = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(7, 32, 32), list(range(7)), Fraction(1, 10))
    upload(src, f"{bucket}/in/a.mp4", options)
    convert_video(f"{bucket}/in/a.mp4", f"{bucket}/out/a.mp4", ConversionSettings(factor=2, chunk_frames=3),
                  storage_options=options)
    fs = s3fs.S3FileSystem(**options)
    written = fs.find(bucket[5:])
    assert any(k.endswith("DONE.json") for k in written) and any(k.endswith("manifest.parquet") for k in written)
    for key in written:
        assert MARKER.encode() not in fs.cat_file(key), key
    database = get_current_settings().server.database.connection_url.get_secret_value().split("///", 1)[-1]
    files = [p for p in Path(database).parent.glob(Path(database).name + "*")]
    assert files, database
    for path in files:
        assert MARKER.encode() not in path.read_bytes(), path


def test_prefect_home_is_made_private(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_HOME, temporary_settings

    from flows.runner import keep_prefect_home_private

    home = tmp_path / "prefect-home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    with temporary_settings({PREFECT_HOME: str(home)}):
        keep_prefect_home_private()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
