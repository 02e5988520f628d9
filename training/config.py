"""Training settings (the architecture presets they name live in slomo_core.model.unet)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from slomo_core.errors import ConfigError
from slomo_core.model.superslomo import ARCH_SUPERSLOMO, ARCHITECTURES
from slomo_core.model.unet import PRESETS
from slomo_core.model.warp_convention import WARP_CONVENTIONS, WarpConvention

RENDERERS: tuple[str, ...] = ("auto", "opencv", "device")


@dataclass
class TrainConfig:
    """Everything that shapes a run; stored in its checkpoints. ``widths`` and ``crop`` are fixed per run."""

    preset: str = "light"
    arch: str = ARCH_SUPERSLOMO  # or "superslomo-dis": DIS flows (computed per triplet) + the interpolation U-Net
    crop: int = 128
    batch_size: int = 8
    lr: float = 2e-4
    lr_milestones: tuple[int, ...] = ()
    steps: int = 200_000
    max_minutes: float | None = None
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"  # bf16 where the hardware has it (CUDA, CPUs with avx512_bf16/AMX), else fp32
    channels_last: bool = False  # measured on this 2-core CPU: NCHW backward is ~10% faster in training
    threads: int | None = None
    max_shift: float = 24.0
    # Who renders synthetic frames: "opencv" (host, one sample at a time; fastest on CPUs), "device"
    # (grid_sample batches on the training device), "auto" = device when training on CUDA, else opencv.
    renderer: str = "auto"
    video_fraction: float = 0.5
    videos: tuple[str, ...] = ()  # "PATH" or "PATH@x0,y0,x1,y1" (region kept out of training crops)
    photo_dirs: tuple[str, ...] = ()
    init_weights: str | None = None  # start a fresh run from these weights (slomo or public layout)
    warp: str = "slomo"  # the warp convention trained under (model.synthesis), recorded in every checkpoint
    teacher: str | None = None  # RIFE v4.0 flownet.pkl: distillation targets (training.distill), training only
    distill_weight: float = 1.0
    checkpoint_every: int = 200
    eval_every: int = 200
    eval_samples: int = 48
    log_every: int = 20
    extra: dict = field(default_factory=dict)

    @property
    def widths(self) -> tuple[int, ...]:
        return PRESETS[self.preset]

    @property
    def warp_convention(self) -> WarpConvention:
        return WARP_CONVENTIONS[self.warp]

    def validate(self) -> TrainConfig:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.arch!r} (use {', '.join(ARCHITECTURES)})")
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r} (use {', '.join(PRESETS)})")
        if self.crop < 64 or self.crop % 32:
            raise ConfigError(f"crop must be a multiple of 32 and at least 64, got {self.crop}")
        if self.batch_size < 1 or self.steps < 1 or self.lr <= 0:
            raise ConfigError("batch size, steps and learning rate must be positive")
        if self.warp not in WARP_CONVENTIONS:
            raise ConfigError(f"unknown warp convention {self.warp!r} (use {', '.join(WARP_CONVENTIONS)})")
        if self.renderer not in RENDERERS:
            raise ConfigError(f"unknown renderer {self.renderer!r} (use {', '.join(RENDERERS)})")
        if self.distill_weight < 0:
            raise ConfigError(f"distill weight must be >= 0, got {self.distill_weight}")
        if not 0.0 <= self.video_fraction <= 1.0:
            raise ConfigError(f"video fraction must be in [0, 1], got {self.video_fraction}")
        return self

    def to_dict(self) -> dict:
        data = asdict(self)
        data["lr_milestones"] = list(self.lr_milestones)
        data["videos"] = list(self.videos)
        data["photo_dirs"] = list(self.photo_dirs)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("lr_milestones", "videos", "photo_dirs"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)
