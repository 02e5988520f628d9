"""Training: exact synthetic motion, cut-free video triplets, the losses, resumable runs, export, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from slomo_core.errors import ConfigError
from slomo_core.interp.base import PairRequest
from slomo_core.interp.network import SuperSloMoInterpolator
from slomo_core.model.checkpoint import load_superslomo
from slomo_core.model.unet import LIGHT_WIDTHS
from slomo_core.model.warp_convention import PUBLIC_WARP, SLOMO_WARP
from slomo_core.storage import file_sha256
from tests.clips import cfr_pts, make_clip, moving_square_frames
from training import cli
from training.config import TrainConfig
from training.data import SceneDraw, TripletSampler
from training.export import export_weights
from training.loop import BEST_FILE, CURVE_FILE, STATE_FILE, Trainer
from training.losses import SuperSloMoObjective, smoothness
from training.photos import load_photos, photo_paths
from training.state_file import read_state
from training.synthetic import (
    MotionRange,
    SyntheticScene,
    _Path,
    random_scene,
    synthetic_triplet,
)
from training.video_samples import Region, load_clip, video_triplet


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return load_photos(photo_paths()[:4], min_side=128)


def tiny_config(**overrides) -> TrainConfig:
    base = {"crop": 64, "batch_size": 2, "steps": 4, "eval_every": 2, "checkpoint_every": 2, "eval_samples": 4,
            "log_every": 1, "threads": 2, "max_shift": 6.0}
    base.update(overrides)
    return TrainConfig(**base)


# -- synthetic sequences ---------------------------------------------------------------------------
def test_synthetic_translation_is_exact(photos):
    """A background moving 8 px right: frame 1 is frame 0 shifted by 8, the t=0.5 frame by 4."""
    path = _Path(centre=(200.0, 150.0), position=(32.0, 32.0), velocity=(8.0, 0.0), angle=0.0, spin=0.0,
                 scale=1.0, zoom=0.0)
    scene = SyntheticScene(photos[0], path, (), 64)
    f0, half, f1 = scene.render(0.0), scene.render(0.5), scene.render(1.0)
    assert np.array_equal(f1[:, 8:], f0[:, :-8])
    assert np.array_equal(half[:, 4:], f0[:, :-4])
    assert not np.array_equal(f0, f1)


def test_synthetic_triplets_are_seeded_and_occluded(photos):
    a = synthetic_triplet(np.random.default_rng(3), photos, 64, 0.3)
    b = synthetic_triplet(np.random.default_rng(3), photos, 64, 0.3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(x.shape == (64, 64, 3) and x.dtype == np.uint8 for x in a)
    rng = np.random.default_rng(0)
    scenes = [random_scene(rng, photos, 64, MotionRange(max_sprites=3)) for _ in range(30)]
    assert max(len(s.sprites) for s in scenes) >= 2  # occluders appear
    assert min(len(s.sprites) for s in scenes) == 0


def test_device_renderer_draws_the_same_scenes_as_opencv(photos):
    """Same RNG, same samples: grid_sample frames match OpenCV's to a level, t and time direction exactly."""
    opencv = TripletSampler(photos, (), 64, MotionRange(max_shift=12.0))
    device = TripletSampler(photos, (), 64, MotionRange(max_shift=12.0), device=torch.device("cpu"))
    a, b = opencv.batch(np.random.default_rng(7), 12), device.batch(np.random.default_rng(7), 12)
    assert torch.equal(a.t, b.t) and {float(x) > 0.5 for x in a.t} == {True, False}
    for x, y in ((a.frame0, b.frame0), (a.frame_t, b.frame_t), (a.frame1, b.frame1)):
        assert x.shape == y.shape == (12, 3, 64, 64)
        levels = ((x - y).abs() * 255).round()
        assert float(levels.max()) <= 2 and float(levels.mean()) < 0.05
    assert not torch.equal(b.frame0, b.frame1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_renderer_on_cuda_matches_opencv(photos):
    opencv = TripletSampler(photos, (), 64, MotionRange(max_shift=12.0))
    cuda = TripletSampler(photos, (), 64, MotionRange(max_shift=12.0), device=torch.device("cuda"))
    a, b = opencv.batch(np.random.default_rng(7), 12), cuda.batch(np.random.default_rng(7), 12)
    assert b.frame_t.is_cuda and torch.equal(a.t, b.t.cpu())
    levels = ((a.frame_t - b.frame_t.cpu()).abs() * 255).round()
    assert float(levels.max()) <= 2 and float(levels.mean()) < 0.05


def test_device_renderer_moves_a_translated_photo_exactly(photos):
    """An 8 px shift: the middle frame at t = 0.25 is frame 0 moved by exactly 2 px (ground truth at any t)."""
    from training.device_render import DeviceSceneRenderer

    path = _Path(centre=(200.0, 150.0), position=(32.0, 32.0), velocity=(8.0, 0.0), angle=0.0, spin=0.0,
                 scale=1.0, zoom=0.0)
    scene = SyntheticScene(photos[0], path, (), 64)
    frames = DeviceSceneRenderer(photos, 64, torch.device("cpu")).render([scene], np.array([[0.0, 0.25, 1.0]]))[0]
    f0, quarter, f1 = (torch.from_numpy(scene.render(s)).permute(2, 0, 1).float() / 255 for s in (0.0, 0.25, 1.0))
    assert torch.equal(frames[0], f0) and torch.equal(frames[1], quarter) and torch.equal(frames[2], f1)
    assert torch.equal(frames[1][:, :, 2:], frames[0][:, :, :-2])


# -- video triplets --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> str:
    frames = moving_square_frames(8, 96, 96, dx=3, seed=1)
    noise = np.random.default_rng(2).integers(0, 8, (96, 96, 3))
    frames += [(np.roll(noise, 2 * i, axis=1) + 244).astype(np.uint8) for i in range(8)]  # cut: near-white shot
    path = str(tmp_path_factory.mktemp("train") / "cut.mp4")
    return make_clip(path, frames, cfr_pts(16), Fraction(1, 25), options={"crf": "0"})


def test_video_triplets_avoid_cuts_and_region(cut_clip):
    clip = load_clip(cut_clip, exclude=Region(32, 0, 96, 96))
    assert clip.cuts == frozenset({8})
    rng = np.random.default_rng(0)
    for _ in range(60):
        f0, ft, f1, t = video_triplet(rng, [clip], 32, max_span=6)
        assert 0 < t < 1 and f0.shape == ft.shape == f1.shape == (32, 32, 3)
        # every frame of one triplet comes from the same shot (the second one is near white)
        assert len({float(f.mean()) > 230 for f in (f0, ft, f1)}) == 1


def test_region_that_leaves_no_room_is_an_error(cut_clip):
    clip = load_clip(cut_clip, exclude=Region(0, 0, 80, 80))
    with pytest.raises(ConfigError, match="outside the excluded region"):
        video_triplet(np.random.default_rng(0), [clip], 32)
    with pytest.raises(ConfigError, match="bad region"):
        Region.parse("1,2,3")


def test_device_batches_carry_video_triplets_unchanged(cut_clip, photos):
    clip = load_clip(cut_clip)
    opencv = TripletSampler(photos, [clip], 32, MotionRange(max_shift=6.0), video_fraction=0.5)
    device = TripletSampler(photos, [clip], 32, MotionRange(max_shift=6.0), video_fraction=0.5,
                            device=torch.device("cpu"))
    a, b = opencv.batch(np.random.default_rng(4), 10), device.batch(np.random.default_rng(4), 10)
    draws_rng = np.random.default_rng(4)
    video = [i for i in range(10) if not isinstance(opencv._draw(draws_rng), SceneDraw)]
    assert torch.equal(a.t, b.t) and 0 < len(video) < 10
    for i in range(10):  # video rows are copied bit for bit; synthetic ones rendered within a level or two
        assert float((a.frame_t[i] - b.frame_t[i]).abs().max()) <= (0 if i in video else 2.5 / 255)


# -- losses ----------------------------------------------------------------------------------------
def test_smoothness_is_zero_for_constant_flow():
    assert float(smoothness(torch.full((1, 2, 8, 8), 3.0))) == 0.0
    assert float(smoothness(torch.arange(64.0).view(1, 1, 8, 8).repeat(1, 2, 1, 1))) > 0


def test_objective_gives_every_term_and_gradients_to_both_nets(photos):
    from slomo_core.model.superslomo import SuperSloMo, SuperSloMoConfig

    torch.manual_seed(0)
    model = SuperSloMo(SuperSloMoConfig(widths=LIGHT_WIDTHS))
    objective = SuperSloMoObjective(model)
    f0, ft, f1 = (torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255
                  for x in synthetic_triplet(np.random.default_rng(1), photos, 64, 0.5))
    losses = objective(f0, ft, f1, torch.tensor([0.5]))
    assert {"total", "reconstruction", "warping", "smoothness"} <= set(losses)
    assert all(torch.isfinite(losses[k]) for k in ("total", "reconstruction", "warping", "smoothness"))
    losses["total"].backward()
    assert model.flow_net.conv1.weight.grad.abs().sum() > 0
    assert model.interp_net.conv1.weight.grad.abs().sum() > 0


# -- the loop --------------------------------------------------------------------------------------
def test_training_learns_a_fixed_batch(tmp_path):
    # fp32: this checks learning, not bf16 numerics (dtype auto picks bf16 on CPUs with AVX512-BF16, like this one)
    trainer = Trainer(tiny_config(lr=1e-3, dtype="fp32"), tmp_path)
    batch = trainer.sampler.batch(np.random.default_rng(5), 4)
    first = trainer.train_step(batch)["reconstruction"]
    for _ in range(40):
        last = trainer.train_step(batch)["reconstruction"]
    assert last < 0.7 * first


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_training_with_the_device_renderer_runs_and_resumes(tmp_path):
    Trainer(tiny_config(steps=1, renderer="device"), tmp_path).run()
    resumed = Trainer(tiny_config(steps=2, renderer="device"), tmp_path)
    assert resumed.sampler.device == torch.device("cpu") and resumed.state.step == 1
    assert resumed.run().step == 2
    with pytest.raises(ConfigError, match="unknown renderer"):
        tiny_config(renderer="gpu").validate()


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    straight = Trainer(tiny_config(steps=4), tmp_path / "straight")
    straight.run()
    first = Trainer(tiny_config(steps=2), tmp_path / "split")
    first.run()
    resumed = Trainer(tiny_config(steps=4), tmp_path / "split")
    assert resumed.state.step == 2
    resumed.run()
    assert resumed.state.step == 4
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    curve = (tmp_path / "split" / CURVE_FILE).read_text().splitlines()
    assert curve[0].startswith("step,") and [line.split(",")[0] for line in curve[1:]] == ["1", "2", "3", "4"]


def test_resume_refuses_another_architecture(tmp_path):
    Trainer(tiny_config(steps=1), tmp_path).run()
    with pytest.raises(ConfigError, match="cannot resume"):
        Trainer(tiny_config(steps=2, preset="full"), tmp_path)


class _Payload:
    """Pickles to a call that creates ``marker``: what a crafted state.pt would run if unpickled freely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_crafted_state_is_refused_in_one_line_and_its_payload_never_runs(tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    run.mkdir()
    torch.save({"format": "slomo.train-state", "config": _Payload(marker)}, run / STATE_FILE)
    with pytest.raises(ConfigError, match="refused unread"):
        Trainer(tiny_config(steps=1), run)
    assert cli.main(["train", "--out", str(run), "--crop", "64", "--steps", "1", "--threads", "2"]) == 1
    err = capsys.readouterr().err
    assert not marker.exists()
    assert err.count("\n") == 1 and "refused unread" in err and "another --out" in err
    (run / STATE_FILE).write_bytes(b"not a pickle at all")
    with pytest.raises(ConfigError, match="refused unread"):
        Trainer(tiny_config(steps=1), run)


def test_state_holds_only_plain_types_and_version_1_states_still_resume(tmp_path):
    Trainer(tiny_config(steps=2), tmp_path / "run").run()
    path = tmp_path / "run" / STATE_FILE
    data = torch.load(path, weights_only=True)  # raises if anything but tensors and plain data is inside
    assert isinstance(data["meta"], str)
    meta = json.loads(data["meta"])
    # the layout runs wrote before this format: config, counters and RNG as nested dicts
    torch.save({"format": "slomo.train-state", "config": meta["config"], "model": data["model"],
                "optimizer": data["optimizer"], "state": meta["state"], "rng": meta["rng"]}, path)
    resumed = Trainer(tiny_config(steps=3), tmp_path / "run")
    assert resumed.state.step == 2
    assert resumed.rng.bit_generator.state == meta["rng"]["0"]


def test_best_weights_load_run_and_export(tmp_path):
    Trainer(tiny_config(steps=2), tmp_path / "run").run()
    best = tmp_path / "run" / BEST_FILE
    _, info = load_superslomo(str(best))
    assert info.config.widths == LIGHT_WIDTHS and info.training["steps"] == 2 and info.config.warp == SLOMO_WARP
    digest, card = export_weights(str(best), str(tmp_path / "shipped.pt"), curve_csv=str(tmp_path / "run" / CURVE_FILE))
    shipped, shipped_info = load_superslomo(str(tmp_path / "shipped.pt"))
    assert shipped_info.weights_sha256 == digest
    assert (tmp_path / "shipped.pt").stat().st_size < 0.6 * best.stat().st_size  # fp16
    text = Path(card).read_text()
    assert digest in text and file_sha256(str(tmp_path / "shipped.pt")) in text and "synthetic" in text
    assert "## Learning curve" in text and "| 2 | 4 |" in text  # step 2, 4 samples: the validation row
    assert SLOMO_WARP.describe() in text and shipped_info.config.warp == SLOMO_WARP
    frame = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    (out,) = SuperSloMoInterpolator(shipped).interpolate([PairRequest(frame, frame, (0.5,))])
    assert out[0].shape == frame.shape


def test_cli_trains_resumes_and_reports_bad_options(tmp_path, capsys):
    def train(steps: int) -> int:
        return cli.main(["train", "--out", str(tmp_path / "run"), "--crop", "64", "--batch-size", "1",
                         "--steps", str(steps), "--eval-every", "2", "--threads", "2"])

    assert train(2) == 0
    assert train(3) == 0
    out = capsys.readouterr().out
    assert "step 2 of 3" in out and (tmp_path / "run" / STATE_FILE).exists()
    assert cli.main(["train", "--out", str(tmp_path / "bad"), "--crop", "100"]) == 1
    assert "multiple of 32" in capsys.readouterr().err


def test_ray_train_runs_two_ddp_workers(tmp_path, ray_session):
    from training.distributed import train_with_ray

    train_with_ray(tiny_config(steps=2, threads=1), str(tmp_path / "run"), workers=2)
    _, info = load_superslomo(str(tmp_path / "run" / BEST_FILE))
    assert info.training["steps"] == 2
    assert info.training["batch_size"] == 4  # two workers x two samples: gradients averaged by DDP
    rows = (tmp_path / "run" / CURVE_FILE).read_text().splitlines()[1:]
    assert rows[-1].split(",")[2] == "8"  # samples seen after 2 steps of 2 workers x 2


def test_fresh_run_can_start_from_given_weights(tmp_path):
    Trainer(tiny_config(steps=1), tmp_path / "first").run()
    best = str(tmp_path / "first" / BEST_FILE)
    second = Trainer(tiny_config(steps=1, init_weights=best), tmp_path / "second")
    source, _ = load_superslomo(best)
    assert torch.equal(second.model.flow_net.conv1.weight, source.flow_net.conv1.weight)
    with pytest.raises(ConfigError, match="do not match"):
        Trainer(tiny_config(steps=1, init_weights=best, preset="full"), tmp_path / "third")


def test_runs_record_the_warp_they_train_with(tmp_path):
    """A run under the public warp trains, checkpoints and exports with it; resuming under another is refused."""
    Trainer(tiny_config(steps=1, warp="public"), tmp_path / "run").run()
    _, info = load_superslomo(str(tmp_path / "run" / BEST_FILE))
    assert info.config.warp == PUBLIC_WARP and info.training["warp"] == "public"
    with pytest.raises(ConfigError, match="cannot resume"):
        Trainer(tiny_config(steps=2), tmp_path / "run")
    with pytest.raises(ConfigError, match="unknown warp convention"):
        tiny_config(warp="diagonal").validate()


GPU_SCRIPT = Path(__file__).resolve().parent.parent / "infra" / "train-gpu.sh"


def _gpu_script(run: Path, out: Path, **env: str) -> subprocess.CompletedProcess:
    """infra/train-gpu.sh on the CPU with tiny sizes (the same script a GPU box runs)."""
    settings = {"RUN": str(run), "OUT": str(out), "DEVICE": "cpu", "DTYPE": "fp32", "MINUTES": "0.01",
                "BATCH": "1", "CROP": "64", "BENCH_SECONDS": "0", "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(GPU_SCRIPT)], env={**os.environ, **settings}, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.mark.slow  # three calls of the script, each starting python, torch and a trainer: ~30 s, 90 s under load
def test_gpu_script_returns_the_run_in_parts_and_resumes_from_them(tmp_path):
    first = _gpu_script(tmp_path / "run1", tmp_path / "out1")
    assert first.returncode == 0, first.stderr[-2000:]
    parts = sorted((tmp_path / "out1" / "run").glob("state.pt.part-*"))
    assert len(parts) >= 2 and all(p.stat().st_size <= 15_000_000 for p in parts)
    assert "step 0 of" in (tmp_path / "out1" / "run" / "train.log").read_text()
    steps = read_state(tmp_path / "run1" / STATE_FILE)["meta"]["state"]["step"]
    assert steps >= 1

    carried = tmp_path / "run2"  # what comes back, carried into the next call
    carried.mkdir()
    for file in (tmp_path / "out1" / "run").iterdir():
        (carried / file.name).write_bytes(file.read_bytes())
    second = _gpu_script(carried, tmp_path / "out2")
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"step {steps} of" in second.stdout  # resumed where the first call stopped
    assert read_state(carried / STATE_FILE)["meta"]["state"]["step"] > steps

    damaged = tmp_path / "run3"
    damaged.mkdir()
    for file in (tmp_path / "out2" / "run").iterdir():
        if not file.name.endswith("part-aa"):
            (damaged / file.name).write_bytes(file.read_bytes())
    third = _gpu_script(damaged, tmp_path / "out3")
    assert third.returncode == 1 and "do not match" in third.stderr
    assert not (damaged / STATE_FILE).exists()
