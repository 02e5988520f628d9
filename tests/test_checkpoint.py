"""Checkpoints: the public re-implementation's layout loads unchanged; bad files fail in one clear line."""

from __future__ import annotations

import datetime
import pathlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from slomo_core.errors import CheckpointError
from slomo_core.model.checkpoint import load_superslomo, save_superslomo
from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig
from slomo_core.model.warp_convention import PUBLIC_WARP, SLOMO_WARP

TINY = SuperSloMoConfig(widths=(4, 8, 8, 8, 8, 8))
WHEN = datetime.datetime(2019, 3, 14, 15, 9, 26, 535897)


def _public_layout(model: SuperSloMo) -> dict:
    """Everything the public train.py saves: its bookkeeping (a datetime, lists of per-epoch losses) and weights."""
    return {
        "Detail": "End to end Super SloMo.",
        "epoch": 199,
        "timestamp": WHEN,
        "trainBatchSz": 6,
        "validationBatchSz": 10,
        "learningRate": 1e-5,
        "loss": [[0.31, 0.29], [0.27]],
        "trainLoss": [0.31, 0.27],
        "valLoss": [[0.35], [0.33]],
        "valPSNR": [[30.1], [30.4]],
        "state_dictFC": model.flow_net.state_dict(),
        "state_dictAT": model.interp_net.state_dict(),
    }


def _same_weights(a: SuperSloMo, b: SuperSloMo) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("zip_format", [True, False])
def test_public_layout_full_size_loads_unchanged(tmp_path: Path, zip_format: bool) -> None:
    torch.manual_seed(1)
    model = SuperSloMo()
    path = tmp_path / "SuperSloMo.ckpt"
    torch.save(_public_layout(model), path, _use_new_zipfile_serialization=zip_format)
    loaded, info = load_superslomo(str(path))
    assert info.layout == "public"
    assert info.config.widths == (32, 64, 128, 256, 512, 512)
    assert info.config.mean == (0.429, 0.431, 0.397)
    assert info.training["epoch"] == 199 and info.training["timestamp"] == WHEN.isoformat()
    assert info.config.warp == PUBLIC_WARP  # a public file always runs the public warp
    assert _same_weights(model, loaded)
    public = SuperSloMo(replace(model.config, warp=PUBLIC_WARP))
    public.load_state_dict(model.state_dict())
    x0, x1 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(public.eval()(x0, x1, [0.5]), loaded(x0, x1, [0.5]))


def test_dataparallel_prefix_is_accepted(tmp_path: Path) -> None:
    model = SuperSloMo(TINY)
    data = _public_layout(model)
    for key in ("state_dictFC", "state_dictAT"):
        data[key] = {f"module.{k}": v for k, v in data[key].items()}
    torch.save(data, tmp_path / "dp.ckpt")
    loaded, info = load_superslomo(str(tmp_path / "dp.ckpt"))
    assert _same_weights(model, loaded) and info.training["timestamp"] == WHEN.isoformat()


class _Payload:
    """Pickles as a call to Path.touch: loading it with plain pickle would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_file_carrying_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    data = _public_layout(SuperSloMo(TINY))
    data["Detail"] = _Payload(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(data, path)
    message = _error(path)
    assert "refused" in message and "none of it was run" in message
    assert not marker.exists()


def test_datetime_is_allowed_only_during_the_load(tmp_path: Path) -> None:
    torch.save(_public_layout(SuperSloMo(TINY)), tmp_path / "p.ckpt")
    load_superslomo(str(tmp_path / "p.ckpt"))
    assert datetime.datetime not in torch.serialization.get_safe_globals()
    with pytest.raises(Exception, match="datetime"):
        torch.load(tmp_path / "p.ckpt", weights_only=True)


def test_own_format_records_the_warp_convention(tmp_path: Path) -> None:
    for warp in (SLOMO_WARP, PUBLIC_WARP):
        model = SuperSloMo(replace(TINY, warp=warp))
        save_superslomo(model, str(tmp_path / "w.pt"))
        assert torch.load(tmp_path / "w.pt", weights_only=True)["warp"]["name"] == warp.name
        loaded, info = load_superslomo(str(tmp_path / "w.pt"))
        assert info.config.warp == warp and loaded.config.warp == warp


def test_own_format_before_conventions_runs_slomo_warp(tmp_path: Path) -> None:
    save_superslomo(SuperSloMo(replace(TINY, warp=PUBLIC_WARP)), str(tmp_path / "v1.pt"))
    data = torch.load(tmp_path / "v1.pt", weights_only=True)
    del data["warp"]
    data["format_version"] = 1
    torch.save(data, tmp_path / "v1.pt")
    _, info = load_superslomo(str(tmp_path / "v1.pt"))
    assert info.config.warp == SLOMO_WARP


def test_unknown_warp_convention_is_one_clear_error(tmp_path: Path) -> None:
    save_superslomo(SuperSloMo(TINY), str(tmp_path / "w.pt"))
    data = torch.load(tmp_path / "w.pt", weights_only=True)
    data["warp"]["padding"] = "reflection"
    torch.save(data, tmp_path / "w.pt")
    assert "unknown warp convention" in _error(tmp_path / "w.pt")


def test_own_format_round_trip_with_metadata(tmp_path: Path) -> None:
    model = SuperSloMo(SuperSloMoConfig(widths=(8, 16, 16, 16, 16, 16), mean=(0.5, 0.5, 0.5)))
    digest = save_superslomo(model, str(tmp_path / "own.pt"), training={"steps": 10, "data": "synthetic"})
    loaded, info = load_superslomo(str(tmp_path / "own.pt"))
    assert info.layout == "slomo" and info.weights_sha256 == digest and len(info.file_sha256) == 64
    assert info.config == model.config
    assert info.training == {"steps": 10, "data": "synthetic"}
    assert _same_weights(model, loaded)


def test_own_format_fp16_is_small_and_close(tmp_path: Path) -> None:
    model = SuperSloMo(TINY)
    save_superslomo(model, str(tmp_path / "a32.pt"))
    save_superslomo(model, str(tmp_path / "a16.pt"), dtype=torch.float16)
    assert (tmp_path / "a16.pt").stat().st_size < 0.7 * (tmp_path / "a32.pt").stat().st_size
    loaded, _ = load_superslomo(str(tmp_path / "a16.pt"))
    for name, value in model.state_dict().items():
        assert torch.allclose(value, loaded.state_dict()[name], atol=1e-3, rtol=1e-3)


def test_own_format_detects_tampered_weights(tmp_path: Path) -> None:
    model = SuperSloMo(TINY)
    save_superslomo(model, str(tmp_path / "m.pt"))
    data = torch.load(tmp_path / "m.pt", weights_only=True)
    data["state_dictAT"]["conv3.bias"] += 1.0
    torch.save(data, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="sha256"):
        load_superslomo(str(tmp_path / "m.pt"))


def _error(path: Path) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_superslomo(str(path))
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nope.ckpt")


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("definitely not weights")
    assert "not a readable PyTorch checkpoint" in _error(tmp_path / "notes.txt")


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "cut.ckpt"
    torch.save(_public_layout(SuperSloMo(TINY)), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "not a readable PyTorch checkpoint" in _error(path)


def test_wrong_dict(tmp_path: Path) -> None:
    torch.save({"model": {"w": torch.zeros(1)}}, tmp_path / "other.pt")
    assert "not a Super SloMo checkpoint" in _error(tmp_path / "other.pt")


def test_missing_keys(tmp_path: Path) -> None:
    data = _public_layout(SuperSloMo(TINY))
    del data["state_dictAT"]["up3.conv2.weight"]
    torch.save(data, tmp_path / "missing.pt")
    assert "missing 1 keys (e.g. up3.conv2.weight)" in _error(tmp_path / "missing.pt")


def test_wrong_shapes(tmp_path: Path) -> None:
    # A flow net whose input layer expects 5 channels instead of 6.
    data = _public_layout(SuperSloMo(TINY))
    data["state_dictFC"]["conv1.weight"] = torch.zeros(4, 5, 7, 7)
    torch.save(data, tmp_path / "shape.pt")
    assert "shape mismatch for conv1.weight" in _error(tmp_path / "shape.pt")


def test_nan_weights(tmp_path: Path) -> None:
    data = _public_layout(SuperSloMo(TINY))
    data["state_dictAT"]["conv1.bias"][0] = float("nan")
    torch.save(data, tmp_path / "nan.pt")
    assert "NaN" in _error(tmp_path / "nan.pt")
