"""Distillation: pull the student's flows and frames toward a stronger teacher's on the same crops.

Per batch the teacher (RIFE v4.0, ``training.teacher_rife``) runs under ``no_grad`` on the student's own
frame pairs and times, and the objective adds

    W * (L1(flow_t0, teacher flow_t0) + L1(flow_t1, teacher flow_t1) + 204 * L1(frame, teacher frame))

Flows are in pixels; the frame term carries the reconstruction loss's weight (204: frames in [0, 1] scored
on the 0-255 scale), so the three are of one order. The term reads only ``IntermediateFrames`` (frames,
flow_t0, flow_t1), so any architecture that returns it can be distilled. The teacher is for training only:
it is never saved with the student, never run at inference, never shipped.
"""

from __future__ import annotations

import torch

from slomo_core.errors import ConfigError
from slomo_core.model.superslomo import IntermediateFrames
from training.losses import LossWeights, l1
from training.teacher_rife import RifeTeacher, TeacherInfo, TeacherOutput, load_rife_teacher

DISTILL_FRAME_WEIGHT = LossWeights.reconstruction


def distill_terms(student: IntermediateFrames, teacher: TeacherOutput) -> tuple[torch.Tensor, torch.Tensor]:
    """(flow term, frame term): L1 of both intermediate flows (pixels) and L1 of the frames."""
    flow = l1(student.flow_t0, teacher.flow_t0) + l1(student.flow_t1, teacher.flow_t1)
    return flow, l1(student.frames, teacher.frames)


class Distiller:
    """The teacher and the term's weight. A plain object, not a module: the teacher stays out of the
    student's state dict, its optimizer and DDP."""

    def __init__(self, teacher: RifeTeacher, info: TeacherInfo, weight: float) -> None:
        self.teacher, self.info, self.weight = teacher, info, weight

    @torch.no_grad()
    def targets(self, frame0: torch.Tensor, frame1: torch.Tensor, t: torch.Tensor) -> TeacherOutput:
        """The teacher's prediction in fp32 (outside any autocast: targets as the quality benchmark measures them)."""
        with torch.autocast(frame0.device.type, enabled=False):
            return self.teacher(frame0.float(), frame1.float(), t.float())

    def __call__(self, frame0: torch.Tensor, frame1: torch.Tensor, t: torch.Tensor, student: IntermediateFrames
                 ) -> dict[str, torch.Tensor]:
        flow, frame = distill_terms(student, self.targets(frame0, frame1, t))
        return {"distill": self.weight * (flow + DISTILL_FRAME_WEIGHT * frame), "distill_flow": flow,
                "distill_frame": frame}


def build_distiller(teacher_path: str | None, weight: float, warp: str, device: torch.device) -> Distiller | None:
    """None without a teacher; a one-line ConfigError/CheckpointError for settings or files it cannot use."""
    if not teacher_path:
        return None
    if warp != "slomo":
        raise ConfigError(f"--teacher needs --warp slomo: the teacher's flows are in slomo's warp convention, "
                          f"and the {warp} warp samples half a pixel away")
    teacher, info = load_rife_teacher(teacher_path, device)
    return Distiller(teacher, info, weight)
