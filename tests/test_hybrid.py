"""superslomo-dis: DIS flows + the paper's interpolation U-Net; untrained it is the plain DIS warp average."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.quality import dis_warp_average
from flows.cli import main
from slomo_core.errors import CheckpointError, ConfigError
from slomo_core.interp.base import PairRequest
from slomo_core.interp.dis import DISInterpolator
from slomo_core.interp.factory import build_interpolator, validate_model_choice
from slomo_core.interp.hybrid import DISSuperSloMoInterpolator
from slomo_core.interp.inference import InferenceSettings
from slomo_core.model.checkpoint import load_superslomo, save_superslomo
from slomo_core.model.shipped import BEST
from slomo_core.model.superslomo import ARCH_DIS_HYBRID, SuperSloMo, SuperSloMoConfig
from slomo_core.model.synthesis import approximate_intermediate_flows, backward_warp
from slomo_core.model.unet import LIGHT_WIDTHS
from slomo_core.model.warp_convention import PUBLIC_WARP, SLOMO_WARP
from slomo_core.video.probe import read_frame_timestamps
from training.config import TrainConfig
from training.loop import CURVE_FILE, Trainer
from training.losses import DISHybridObjective

from clips import make_clip, moving_square_frames

TINY = (4, 8, 8, 8, 8, 8)
FP32_CPU = InferenceSettings(device="cpu", dtype="fp32")


def _hybrid(widths: tuple[int, ...] = TINY, warp=SLOMO_WARP) -> SuperSloMo:
    torch.manual_seed(0)
    return SuperSloMo(SuperSloMoConfig(widths=widths, warp=warp, arch=ARCH_DIS_HYBRID)).eval()


def _textured_pair(h: int = 64, w: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random texture and the same texture moved by (3, -2) px, with a square moving the other way."""
    rng = np.random.default_rng(4)
    base = rng.integers(0, 256, (h // 4 + 4, w // 4 + 4, 3), np.uint8).repeat(4, 0).repeat(4, 1)
    frame0, frame1 = base[4 : 4 + h, 4 : 4 + w].copy(), base[2 : 2 + h, 7 : 7 + w].copy()
    frame0[20:36, 40:56] = 240
    frame1[22:38, 34:50] = 240
    return frame0, frame1


def _tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255


def test_untrained_hybrid_is_the_weighted_average_of_the_two_warps():
    """Zero last layer: no flow residual, visibility 0.5 both ways, so fusion is (1-t) g0 + t g1 exactly."""
    model = _hybrid()
    frame0, frame1 = _textured_pair()
    dis = DISInterpolator(flow_threads=1)
    flow01, flow10 = (torch.from_numpy(f).permute(2, 0, 1)[None] for f in dis.compute_flows(frame0, frame1))
    i0, i1 = _tensor(frame0), _tensor(frame1)
    for t in (0.125, 0.5, 0.875):
        with torch.no_grad():
            out = model.synthesize(i0, i1, flow01, flow10, torch.tensor([t]))
        flow_t0, flow_t1 = approximate_intermediate_flows(flow01, flow10, t)
        average = (1 - t) * backward_warp(i0, flow_t0) + t * backward_warp(i1, flow_t1)
        assert torch.equal(out.flow_t0, flow_t0) and torch.equal(out.flow_t1, flow_t1)
        assert torch.all(out.visibility0 == 0.5)
        assert (out.frames - average).abs().max() < 1e-5
    with pytest.raises(ValueError, match="computes no flows"):
        model.compute_flows(i0, i1)


def test_untrained_hybrid_interpolator_matches_the_dis_warp_average_row():
    """Through the engine (uint8 in and out): bench.quality's dis-warp-average computation on the same DIS flows."""
    frame0, frame1 = _textured_pair()
    dis = DISInterpolator(flow_threads=1)
    interpolator = DISSuperSloMoInterpolator(_hybrid(), FP32_CPU, dis=dis)
    times = (0.25, 0.5, 0.75)
    (frames,) = interpolator.interpolate([PairRequest(frame0, frame1, times)])
    solver = dis._solvers.get()  # the interpolator's own DIS settings, so the flows are the same
    expected = dis_warp_average(frame0, frame1, times, solver)
    for got, want in zip(frames, expected, strict=True):
        diff = np.abs(got.astype(int) - want.astype(int))
        # cv2.remap rounds sample positions to 1/32 px (its fixed-point tables, float images too): at most one level
        assert diff.max() <= 1 and (diff > 0).mean() < 0.1
    blend = [np.rint((1 - t) * frame0 + t * frame1).astype(np.uint8) for t in times]
    assert not any(np.array_equal(f, b) for f, b in zip(frames, blend))


def test_objective_trains_only_the_interp_net_and_keeps_the_distill_hook():
    model = _hybrid(LIGHT_WIDTHS)
    seen = []

    def distill(frame0, frame1, t, out):
        seen.append(out.visibility0.shape)
        term = out.flow_t0.abs().mean()
        return {"distill": 2.0 * term, "extra": term}

    objective = DISHybridObjective(model)
    objective.distill = distill
    frame0, frame1 = _textured_pair()
    flows = [torch.from_numpy(f).permute(2, 0, 1)[None] for f in DISInterpolator().compute_flows(frame0, frame1)]
    losses = objective(_tensor(frame0), _tensor(frame0) * 0.5 + _tensor(frame1) * 0.5, _tensor(frame1),
                       torch.tensor([0.5]), *flows)
    assert {"total", "reconstruction", "warping", "smoothness", "extra"} <= set(losses) and seen == [(1, 1, 64, 96)]
    base = 204 * losses["reconstruction"] + 102 * losses["warping"] + losses["smoothness"]
    assert torch.allclose(losses["total"], base + 2.0 * losses["extra"])
    losses["total"].backward()
    assert model.flow_net is None
    assert model.interp_net.conv3.weight.grad.abs().sum() > 0  # the zero layer learns first


def test_checkpoint_round_trip_keeps_arch_and_warp(tmp_path):
    model = _hybrid(warp=PUBLIC_WARP)
    with torch.no_grad():
        model.interp_net.conv3.bias.fill_(0.25)
    path = tmp_path / "hybrid.pt"
    digest = save_superslomo(model, str(path), training={"steps": 3})
    loaded, info = load_superslomo(str(path))
    assert info.config.arch == ARCH_DIS_HYBRID and info.config.warp == PUBLIC_WARP and info.config.widths == TINY
    assert info.weights_sha256 == digest and loaded.flow_net is None
    assert torch.equal(loaded.interp_net.conv3.bias, model.interp_net.conv3.bias)  # loaded, not re-zeroed
    data = torch.load(path, weights_only=True)
    assert data["architecture"]["name"] == "superslomo-dis" and data["state_dictFC"] == {}


def test_each_model_refuses_the_other_architecture_in_one_line(tmp_path):
    hybrid, plain = tmp_path / "hybrid.pt", tmp_path / "plain.pt"
    save_superslomo(_hybrid(), str(hybrid))
    save_superslomo(SuperSloMo(SuperSloMoConfig(widths=TINY)), str(plain))
    with pytest.raises(CheckpointError, match="holds superslomo-dis weights, not superslomo .*--model superslomo-dis"):
        build_interpolator("superslomo", str(hybrid), FP32_CPU)
    with pytest.raises(CheckpointError, match="holds superslomo weights, not superslomo-dis"):
        build_interpolator("superslomo-dis", str(plain), FP32_CPU)
    assert isinstance(build_interpolator("superslomo-dis", str(hybrid), FP32_CPU), DISSuperSloMoInterpolator)
    with pytest.raises(CheckpointError, match="needs a superslomo-dis model, got superslomo"):
        DISSuperSloMoInterpolator(SuperSloMo(SuperSloMoConfig(widths=TINY)))


def test_without_weights_it_runs_the_best_shipped_or_says_to_pass_weights():
    if BEST["superslomo-dis"] is None:
        with pytest.raises(CheckpointError, match="pass --weights"):
            validate_model_choice("superslomo-dis", None)
    else:
        validate_model_choice("superslomo-dis", None)
        interpolator = build_interpolator("superslomo-dis", None, FP32_CPU)
        assert isinstance(interpolator, DISSuperSloMoInterpolator)


def test_cli_converts_a_tiny_clip_with_hybrid_weights(tmp_path: Path, capsys):
    clip = make_clip(str(tmp_path / "in.mp4"), moving_square_frames(5, 64, 48), list(range(5)), Fraction(1, 25))
    weights = tmp_path / "hybrid.pt"
    save_superslomo(_hybrid(), str(weights))
    out = tmp_path / "out.mp4"
    assert main(["convert", clip, str(out), "--factor", "2", "--model", "superslomo-dis", "--weights", str(weights),
                 "-q", "--local"]) == 0
    assert len(read_frame_timestamps(str(out))) == 9
    assert main(["convert", clip, str(tmp_path / "o.mp4"), "--factor", "2", "--model", "superslomo",
                 "--weights", str(weights), "--local"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("slomo: error: ") and "\n" not in err and "--model superslomo-dis" in err


def _tiny(**overrides) -> TrainConfig:
    base = {"arch": "superslomo-dis", "crop": 64, "batch_size": 2, "steps": 4, "eval_every": 2, "checkpoint_every": 2,
            "eval_samples": 4, "log_every": 1, "threads": 2, "max_shift": 6.0, "dtype": "fp32"}
    base.update(overrides)
    return TrainConfig(**base)


def test_hybrid_training_resumes_like_an_uninterrupted_run(tmp_path):
    straight = Trainer(_tiny(), tmp_path / "straight")
    straight.run()
    Trainer(_tiny(steps=2), tmp_path / "split").run()
    resumed = Trainer(_tiny(), tmp_path / "split")
    assert resumed.state.step == 2
    resumed.run()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert set(a) == set(b) and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not torch.all(a["interp_net.conv3.weight"] == 0)  # it learned
    curve = (tmp_path / "split" / CURVE_FILE).read_text().splitlines()
    assert [line.split(",")[0] for line in curve[1:]] == ["1", "2", "3", "4"]
    best, info = load_superslomo(str(tmp_path / "split" / "best.pt"))
    assert info.config.arch == "superslomo-dis" and info.training["arch"] == "superslomo-dis"
    with pytest.raises(ConfigError, match="cannot resume"):
        Trainer(_tiny(arch="superslomo"), tmp_path / "split")


def test_quality_bench_gives_a_hybrid_file_its_own_row(tmp_path):
    """``bench.quality --weights FILE`` runs a superslomo-dis file as superslomo-dis (untrained: the warp average)."""
    from bench.quality import Group, build_methods

    path = tmp_path / "hybrid.pt"
    save_superslomo(_hybrid(), str(path))
    methods = build_methods([str(path)], random_network=False, baselines=False)
    frame0, frame1 = _textured_pair()
    produced, _, count = methods["hybrid.pt"]([frame0, frame1], [Group(0, 1, (7,), (0.5,))], 2)
    (expected,) = DISSuperSloMoInterpolator(_hybrid(), FP32_CPU).interpolate([PairRequest(frame0, frame1, (0.5,))])
    assert count == 1 and np.array_equal(produced[7], expected[0])
