"""The conversion settings: every option a user can set, its default and its check, defined once.

The CLI maps its options onto :class:`ConversionSettings`; the flows take it as one typed parameter (Prefect
shows it as a form and validates it, deployments pass it as a mapping); everything downstream (job settings,
chunk length, model spec, pool settings, work root, job layout) is derived here, so adding an option means
one field here, one CLI line and its test.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slomo_core.convert import ConvertOptions
from slomo_core.dedup import DEFAULT_THRESHOLD as DEDUP_THRESHOLD
from slomo_core.dedup import MEASURE
from slomo_core.errors import ConfigError
from slomo_core.interp.factory import (
    DEFAULT_MODEL,
    MODELS,
    NETWORK_MODELS,
    ModelSpec,
    model_weights,
    validate_model_choice,
    weights_digest,
)
from slomo_core.interp.inference import DTYPE_NAMES, InferenceSettings
from slomo_core.lease import DEFAULT_LEASE_SECONDS
from slomo_core.plan import ChunkLength, JobLayout, JobSettings, default_work_root, is_converted, job_layout_for
from slomo_core.scene import DEFAULT_THRESHOLD
from slomo_core.storage import ObjectIdentity, StorageOptions
from slomo_core.timestamps import MAX_FACTOR, MODES, RateSpec, parse_frame_rate
from slomo_core.video.choices import AUDIO_MODES, CODECS, SUBTITLE_MODES, EncoderSettings

DTYPE_CHOICES: tuple[str, ...] = ("auto", *DTYPE_NAMES)
CODEC_CHOICES: tuple[str, ...] = tuple(CODECS)


@dataclass(frozen=True)
class PoolSettings:
    """How many actors, what each reserves, and how hard to retry.

    ``num_gpus_per_worker=None`` means one GPU per actor when the cluster has any, else none, so the
    same settings work on a laptop and on a GPU cluster.
    ``max_start_failures``: consecutive failed actor starts (factory raised, actor died while
    starting) after which the run is abandoned with ``PoolStartError``.
    ``start_timeout_s``: how long to wait for the *first* actor to come up (e.g. resources that the
    cluster does not have); extra actors that stay pending while others work are harmless.
    """

    workers: int = 1
    num_gpus_per_worker: float | None = None
    num_cpus_per_worker: float = 1.0
    max_attempts: int = 3
    retry_on_other_actor: bool = True
    max_start_failures: int = 3
    start_timeout_s: float | None = 600.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.max_start_failures < 1:
            raise ValueError(f"max_start_failures must be >= 1, got {self.max_start_failures}")
        if self.num_cpus_per_worker < 0 or (self.num_gpus_per_worker or 0) < 0:
            raise ValueError("per-worker resources must be >= 0")


class ConversionSettings(BaseModel):
    """How to convert a video (or every video of a batch), and on what.

    A field ``some_name`` is the CLI option ``--some-name``. ``weights_sha256`` pins the weights file's
    bytes; left empty, it is taken from the file once per run (see :meth:`with_weights_digest`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # rate
    factor: int | None = Field(None, ge=2, le=MAX_FACTOR, description="N: N-1 new frames between every pair")
    fps: str | None = Field(None, description="target frame rate: 60, 59.94 (= 60000/1001) or 60000/1001")
    mode: Literal[MODES] | None = Field(  # type: ignore[valid-type]
        None, description="slowmo: same frame rate, N times longer; fps: same duration (default: fps with fps)")
    # model
    model: Literal[MODELS] = Field(  # type: ignore[valid-type]
        DEFAULT_MODEL, description="dis: weight-free optical flow; superslomo: the network; "
        "superslomo-dis: DIS flows refined by the network's second U-Net")
    weights: str | None = Field(None, description="Super SloMo checkpoint (any fsspec URL) or shipped:NAME")
    weights_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="sha256 of the weights file")
    device: str = Field("auto", description="auto (CUDA if present, else CPU), cpu, cuda, cuda:N")
    dtype: Literal[DTYPE_CHOICES] = Field("auto", description="network compute dtype")  # type: ignore[valid-type]
    channels_last: bool = Field(True, description="channels_last memory format for the network")
    compile: bool = Field(False, description="torch.compile the network")
    batch_pairs: int = Field(4, ge=1, description="frame pairs interpolated per call")
    max_batch_pixels: int | None = Field(None, ge=1, description="pixel budget per network pass (default: from free memory)")
    # scene cuts
    scene_threshold: float | None = Field(DEFAULT_THRESHOLD, gt=0, le=1,
                                          description="cut score above which frame i is repeated; None: no detection")
    # duplicate frames
    dedup: bool = Field(False, description="interpolate over repeats of the previous frame (anime on twos, stutters)")
    dedup_threshold: float = Field(DEDUP_THRESHOLD, ge=0, lt=255,
                                   description=f"a frame repeats the previous one when the {MEASURE} is at most this")
    # encoding
    codec: Literal[CODEC_CHOICES] = Field("h264", description="output video codec")  # type: ignore[valid-type]
    crf: int | None = Field(None, description="quality, lower is better (default: the codec's)")
    preset: str | None = Field(None, description="encoder speed preset")
    pix_fmt: str | None = Field(None, description="output pixel format (default: the source's format and depth)")
    audio: Literal[AUDIO_MODES] | None = Field(  # type: ignore[valid-type]
        None, description="fps mode: copy (default) or drop; slowmo mode: drop (default) or stretch")
    subtitles: Literal[SUBTITLE_MODES] | None = Field(  # type: ignore[valid-type]
        None, description="subtitles and chapters; fps mode: copy (default) or drop; slowmo: stretch (default) or drop")
    # distributed run
    chunk_seconds: float | None = Field(10.0, gt=0, description="chunk length in seconds of input (None: one chunk)")
    chunk_frames: int | None = Field(None, ge=1, description="chunk length in input frames (instead of seconds)")
    workers: int = Field(1, ge=1, description="Ray actors, each loading the model once")
    gpus_per_worker: float | None = Field(None, ge=0, description="GPUs per actor (default: 1 if the cluster has GPUs)")
    ray_address: str | None = Field(None, description="Ray cluster, e.g. auto or ray://head:10001 (default: local Ray)")
    work_dir: str | None = Field(None, description="where job state lives (default: .slomo-work beside the output)")
    lease_seconds: float = Field(DEFAULT_LEASE_SECONDS, gt=0,
                                 description="a job's lease time to live, renewed every third of it (see lease.py)")

    @field_validator("fps", mode="before")
    @classmethod
    def _exact_rate(cls, value: object) -> object:
        """Any spelling of a rate becomes its exact fraction, so '59.94' and '60000/1001' are one job."""
        if value is None or isinstance(value, bool):
            return value
        return str(parse_frame_rate(str(value)))

    @model_validator(mode="before")
    @classmethod
    def _default_weights(cls, values: object) -> object:
        """``superslomo`` without weights runs the best shipped ones, recorded by name in the job id."""
        if isinstance(values, dict) and values.get("model") in NETWORK_MODELS and values.get("weights") is None:
            return {**values, "weights": model_weights(values["model"], None)}
        return values

    @model_validator(mode="after")
    def _consistent(self) -> ConversionSettings:
        if self.factor is None and self.fps is None:
            raise ConfigError("give --factor N or --fps RATE")
        validate_model_choice(self.model, self.weights)
        if "dedup_threshold" in self.model_fields_set and not self.dedup:
            raise ConfigError("--dedup-threshold needs --dedup")
        self.job_settings().validate()
        return self

    @classmethod
    def from_values(cls, **values: object) -> ConversionSettings:
        """Validated settings, or a one-line ConfigError naming the option (what the CLI shows)."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(one_line_error(exc)) from None

    # -- derived pieces ----------------------------------------------------------------------------

    @property
    def rate_spec(self) -> RateSpec:
        target = parse_frame_rate(self.fps) if self.fps is not None else None
        return RateSpec(self.mode or ("fps" if target is not None else "slowmo"), self.factor, target)

    def job_settings(self) -> JobSettings:
        """Everything that shapes the output (part of the job id)."""
        return JobSettings(
            spec=self.rate_spec,
            encoder=EncoderSettings(codec=self.codec, crf=self.crf, preset=self.preset, pix_fmt=self.pix_fmt),
            audio_mode=self.audio, scene_threshold=self.scene_threshold, batch_pairs=self.batch_pairs,
            model=self.model, weights_uri=self.weights, weights_sha256=self.weights_sha256,
            dedup_threshold=self.dedup_threshold if self.dedup else None,
            subtitle_mode=self.subtitles,
        )

    @property
    def chunk_length(self) -> ChunkLength:
        """Chunk length in frames when given, else in seconds (None: one chunk)."""
        return ChunkLength(frames=self.chunk_frames) if self.chunk_frames else ChunkLength(seconds=self.chunk_seconds)

    @property
    def inference(self) -> InferenceSettings:
        return InferenceSettings(device=self.device, dtype=self.dtype, channels_last=self.channels_last,
                                 compile=self.compile, max_batch_pixels=self.max_batch_pixels)

    def model_spec(self) -> ModelSpec:
        """What every actor builds."""
        return ModelSpec(self.model, self.weights, self.weights_sha256, self.inference)

    def pool_settings(self) -> PoolSettings:
        return PoolSettings(workers=self.workers, num_gpus_per_worker=self.gpus_per_worker)

    def work_root(self, output_uri: str) -> str:
        return self.work_dir or default_work_root(output_uri)

    def convert_options(self, overwrite: bool = False) -> ConvertOptions:
        """The same job run in this process (``slomo convert --local``), chunked like the distributed run."""
        job = self.job_settings()
        return ConvertOptions(**{f.name: getattr(job, f.name) for f in fields(JobSettings)},
                              overwrite=overwrite, chunk=self.chunk_length, lease_seconds=self.lease_seconds)

    def with_weights_digest(self, options: StorageOptions | None = None) -> ConversionSettings:
        """These settings with the weights file's sha256 filled in: hash once per run, then pass these on."""
        if self.weights is None or self.weights_sha256 is not None:
            return self
        return self.model_copy(update={"weights_sha256": weights_digest(self.weights, options)})

    def layout_for(self, source_uri: str, output_uri: str, options: StorageOptions | None = None,
                   source_id: ObjectIdentity | None = None) -> JobLayout:
        """Where this video's job keeps its state (weights hashed first: see with_weights_digest);
        ``source_id``: the source's identity when the caller has it (no second HEAD)."""
        return job_layout_for(source_uri, output_uri, self.work_root(output_uri), self.job_settings(),
                              self.chunk_length, options, source_id)

    def is_converted(self, source_uri: str, output_uri: str, options: StorageOptions | None = None) -> bool:
        return is_converted(source_uri, output_uri, self.work_root(output_uri), self.job_settings(),
                            self.chunk_length, options)


_TEMPLATES = {
    "greater_than_equal": "{option} must be >= {ge}, got {input}",
    "greater_than": "{option} must be > {gt}, got {input}",
    "less_than_equal": "{option} {input} is absurd (at most {le})",
    "extra_forbidden": "unknown setting {option}",
}


def one_line_error(exc: ValidationError) -> str:
    """The first problem of a ValidationError as one line that names the option."""
    error = exc.errors()[0]
    option = "--" + "-".join(str(part) for part in error["loc"][:1]).replace("_", "-")
    template = _TEMPLATES.get(error["type"])
    if template is not None:
        return template.format(option=option, input=error.get("input"), **error.get("ctx", {}))
    return f"{option}: {error['msg']}"
