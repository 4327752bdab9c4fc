"""Pydantic I/O shared by the API and the worker: the JobSpec and the read models of every resource.

Shape checks (types, bounds, unknown fields) live here; checks that need the database or the model
list (registered datasets, known timm models, feature compatibility) live in service/spec_checks.py.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

import gkd_catalog
from service.models import JobStatus
from service.notify.addresses import url_problem

# The enums of the REST contract come from the torch-free catalogue (gkd_catalog), the one list of names
# that gkd_core's registries are checked against; mypy sees plain strings.
if TYPE_CHECKING:
    Method = str
    Reference = str
    Stage1Head = str
    Stage2Head = str
    Layout = str
else:
    Method = Literal[tuple(gkd_catalog.METHODS)]
    Reference = Literal[tuple(gkd_catalog.REFERENCES)]
    Stage1Head = Literal[tuple(gkd_catalog.STAGE1_HEADS)]
    Stage2Head = Literal[tuple(gkd_catalog.HEADS)]
    Layout = Literal[tuple(gkd_catalog.LAYOUTS)]
if TYPE_CHECKING:
    NotifyEvent = str
else:
    NotifyEvent = Literal[tuple(status.value for status in JobStatus)]
Precision = Literal["fp32", "bf16"]
LayoutOptionValue = str | int | float | bool | list[str]

_WEIGHTS_URI = re.compile(r"^(s3://[^/\s]+/\S+|file://\S+|artifact://[0-9a-fA-F-]{36}/[\w.\-]+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """NUL characters cannot be stored (PostgreSQL text) and are never meaningful here."""
        if _has_nul(value):
            raise ValueError("NUL characters are not allowed")
        return value


class ModelRef(_Strict):
    """A teacher or student backbone: a timm model name and where its weights come from."""

    model: str = Field(min_length=1, max_length=200, description="timm model name, e.g. vit_small_patch14_dinov2")
    weights: str = Field(
        default="none",
        description='"timm" (pretrained, needs network on the worker), "none" (random init), or a URI: '
        "s3://bucket/key, file://... (under allowed roots), artifact://<job id>/<name>.",
    )
    overrides: dict[str, int | float | bool | str] = Field(
        default_factory=dict,
        max_length=16,
        description="Keyword overrides for timm.create_model (e.g. depth, embed_dim, num_heads for tiny models).",
    )

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        if value in ("timm", "none") or _WEIGHTS_URI.match(value):
            return value
        raise ValueError(
            'weights must be "timm", "none", s3://bucket/key, file:///path or artifact://<job id>/<name>; '
            f"got {value!r}"
        )

    @field_validator("overrides")
    @classmethod
    def _override_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [key for key in value if not key.isidentifier() or key.startswith("_")]
        if bad:
            raise ValueError(f"override keys must be plain identifiers; got {bad}")
        return value


class DataRef(_Strict):
    """A registered dataset (by name) and one of its splits."""

    dataset: str = Field(min_length=1, max_length=100, description="Name given at POST /v1/datasets")
    split: str = Field(default="train", min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_\-]+$")

    @model_validator(mode="before")
    @classmethod
    def _no_options_here(cls, data: Any) -> Any:
        """Layout options belong to the registration, so a job reads a set exactly as it was validated."""
        if isinstance(data, dict) and "options" in data:
            raise ValueError(
                "layout options are set when the dataset is registered (POST /v1/datasets 'options', "
                "gkd data register --option), not per job; register the set again under another name "
                "with the options you want and use that name"
            )
        return data


class TargetRef(DataRef):
    """A target domain: a registered dataset split, evaluated as the paper's protocol says.

    ``resize`` is the test-time scale [w, h] images are fitted to with their aspect kept (Cityscapes
    [1024, 512], BDD100K [1280, 720], ACDC [960, 540], Mapillary [1024, 512]); the logits are upsampled
    to the full-size label. ``group`` names the benchmark average the domain enters (e.g. "GTAV").
    """

    resize: tuple[int, int] | None = Field(default=None, description="Test-time scale [w, h], aspect kept")
    group: str | None = Field(default=None, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$")

    @field_validator("resize")
    @classmethod
    def _resize_bounds(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(16 <= side <= 8192 for side in value):
            raise ValueError(f"resize sides must be 16-8192 pixels; got {list(value)}")
        return value


def _default_loss_weights() -> dict[Literal["cls", "feature", "mask"], float]:
    return {"cls": 1.0, "feature": 1.0, "mask": 1.0}


def _steps_or_epochs(steps: int | None, epochs: float | None, default_steps: int) -> int | None:
    """Exactly one schedule: both given is a mistake; neither means the default number of steps."""
    if steps is not None and epochs is not None:
        raise ValueError(f"give steps or epochs, not both (got steps={steps}, epochs={epochs}); remove one")
    if steps is None and epochs is None:
        return default_steps
    return steps


class ProxyStepSpec(_Strict):
    """Step 1a on the proxy set; every field left out is taken from ``stage1`` (which configures step 1b).

    The paper's recipe: 100 epochs of ImageNet at global batch 512, 224 px, the student's patch kernel
    resized to 14 so a patch-14 teacher runs natively (``student_patch_size: 14``).
    """

    steps: int | None = Field(default=None, ge=1, le=10_000_000)
    epochs: float | None = Field(default=None, gt=0, le=10_000, description="Passes over the proxy set")
    batch_size: int | None = Field(default=None, ge=1, le=4096, description="Global batch (all GPUs)")
    lr: float | None = Field(default=None, gt=0, le=1.0, description="None: 5e-4 * batch_size / 512")
    image_size: int | None = Field(default=None, ge=16, le=2048)
    student_patch_size: int | None = Field(
        default=None, ge=2, le=64, description="Resize the student's patch kernel for this step (ViT students)"
    )

    @model_validator(mode="after")
    def _one_schedule(self) -> ProxyStepSpec:
        if self.steps is not None and self.epochs is not None:
            raise ValueError(
                f"give steps or epochs, not both (got steps={self.steps}, epochs={self.epochs}); remove one"
            )
        return self


class Stage1Spec(_Strict):
    """Stage 1: label-free feature distillation of the teacher into the student (its fields configure step 1b)."""

    steps: int | None = Field(default=None, ge=1, le=10_000_000, description="Default 20000 when epochs is not given")
    epochs: float | None = Field(default=None, gt=0, le=10_000, description="Passes over the source images")
    batch_size: int = Field(default=32, ge=1, le=4096, description="Global batch (all GPUs)")
    lr: float | None = Field(default=None, gt=0, le=1.0, description="None: 5e-4 * batch_size / 512")
    weight_decay: float = Field(default=0.05, ge=0, le=1.0)
    image_size: int = Field(default=224, ge=16, le=2048)
    mask_probability: float = Field(default=0.5, ge=0, le=1)
    mask_ratio: float = Field(default=0.5, ge=0, lt=1)
    loss_weights: dict[Literal["cls", "feature", "mask"], float] = Field(default_factory=_default_loss_weights)
    head: Stage1Head = "qsd"
    checkpoint_every: int = Field(default=1000, ge=1, le=1_000_000)
    proxy_step: ProxyStepSpec | None = Field(
        default=None, description="Step 1a on the proxy set; omitted fields inherit from stage1"
    )
    extra_images: list[DataRef] = Field(
        default_factory=list,
        max_length=16,
        description="A team's own unlabelled images added to step 1b's source images (images-only sets are fine). "
        "Off by default and named in the model card: images from the target domains change the "
        "domain-generalization protocol the paper's numbers assume.",
    )

    @field_validator("loss_weights")
    @classmethod
    def _weights_non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        negative = {k: v for k, v in value.items() if v < 0 or v != v}
        if negative:
            raise ValueError(f"loss weights must be >= 0; got {negative}")
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> Stage1Spec:
        self.steps = _steps_or_epochs(self.steps, self.epochs, 20_000)
        return self

    def step_1a(self) -> ProxyStepSpec:
        """Step 1a's options with everything left out taken from this step (1b)."""
        own = self.proxy_step or ProxyStepSpec()
        inherits_schedule = own.steps is None and own.epochs is None
        return ProxyStepSpec(
            steps=self.steps if inherits_schedule else own.steps,
            epochs=self.epochs if inherits_schedule else own.epochs,
            batch_size=own.batch_size or self.batch_size,
            lr=own.lr if own.lr is not None else (self.lr if own.batch_size is None else None),
            image_size=own.image_size or self.image_size,
            student_patch_size=own.student_patch_size,
        )


class Stage2Spec(_Strict):
    """Stage 2: a segmentation head trained on the frozen student with source labels (the paper's protocol:
    short side 512 x a random scale 0.5-2.0, 512 crops with cat_max_ratio 0.75, flip, photometric distortion)."""

    steps: int | None = Field(default=None, ge=1, le=10_000_000, description="Default 40000 when epochs is not given")
    epochs: float | None = Field(default=None, gt=0, le=10_000, description="Passes over the source's labelled pairs")
    batch_size: int = Field(default=4, ge=1, le=256)
    lr: float = Field(default=1e-4, gt=0, le=1.0)
    crop_size: int = Field(default=512, ge=16, le=2048)
    base_size: int | None = Field(
        default=None, ge=16, le=8192, description="Short side before the random scale (GTAV: 512); null: native size"
    )
    scale: tuple[float, float] = Field(default=(0.5, 2.0), description="Random scale range [low, high]")
    cat_max_ratio: float = Field(
        default=1.0, gt=0, le=1, description="Retry crops until no class covers more than this share (paper: 0.75)"
    )
    flip: bool = True
    photometric: bool = Field(default=True, description="mmseg's photometric distortion")
    head: Stage2Head = "fpn"
    head_channels: int = Field(default=128, ge=8, le=1024, description="Decoder width (the paper's Mask2Former: 256)")
    head_queries: int | None = Field(default=None, ge=1, le=1000, description="Heads with a 'queries' option only")
    head_layers: int | None = Field(default=None, ge=1, le=32, description="Heads with a 'layers' option only")
    grad_clip: float | None = Field(
        default=None, ge=0, le=1000, description="Global gradient-norm clip; null: the head's published default"
    )
    checkpoint_every: int = Field(default=1000, ge=1, le=1_000_000)
    finetune: bool = Field(
        default=False,
        description='Method "none" only: train the student encoder together with the head instead of '
        "freezing it (how a robust teacher is pretrained on a style pool before it is distilled).",
    )

    @model_validator(mode="after")
    def _schedule_and_head_options(self) -> Stage2Spec:
        self.steps = _steps_or_epochs(self.steps, self.epochs, 40_000)
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be [low, high] with 0 < low <= high; got {list(self.scale)}")
        takes = gkd_catalog.HEADS[self.head].options
        for option in ("queries", "layers"):
            if getattr(self, f"head_{option}") is not None and option not in takes:
                owners = [h.name for h in gkd_catalog.HEADS.values() if option in h.options]
                raise ValueError(f"head_{option} applies to the {', '.join(owners)} head, not {self.head!r}; remove it")
        return self


class Resources(_Strict):
    """Where and how the job runs."""

    queue: str = Field(default="gpu", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    gpus: int = Field(default=1, ge=1, le=8)
    precision: Precision = "bf16"
    max_runtime_s: int = Field(default=86_400, ge=60, le=14 * 86_400)


class ExportSpec(_Strict):
    """The files a job ships, each scored per domain as shipped (onnxruntime) beside the PyTorch student."""

    onnx: bool = Field(default=True, description="Export ONNX (opset 17, dynamic batch) and evaluate it per domain")
    int8: bool = Field(
        default=False,
        description="Also ship an INT8 ONNX model (onnxruntime static quantization, calibrated on source images) "
        "and evaluate it per domain",
    )
    calibration_images: int = Field(default=32, ge=1, le=1024, description="Source images calibrating INT8")

    @model_validator(mode="after")
    def _int8_needs_onnx(self) -> ExportSpec:
        if self.int8 and not self.onnx:
            raise ValueError("export.int8 quantizes the ONNX export; set export.onnx to true or remove int8")
        return self


class NotifySpec(_Strict):
    """Where to POST a signed JSON body when the job reaches one of ``events`` (docs/NOTIFICATIONS.md)."""

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="http(s) URL of the receiver; no user:password@. Private, loopback and link-local addresses "
        "are refused unless the server sets GKD_NOTIFY_ALLOW_PRIVATE=1. Redirects are not followed.",
    )
    events: list[NotifyEvent] = Field(
        default_factory=lambda: ["succeeded", "failed", "cancelled"],
        min_length=1,
        description="Statuses that trigger a notification when the job moves into them (queued: a requeue).",
    )

    @field_validator("url")
    @classmethod
    def _url_shape(cls, url: str) -> str:
        problem = url_problem(url)
        if problem is not None:
            raise ValueError(problem)
        return url

    @field_validator("events")
    @classmethod
    def _unique_events(cls, events: list[str]) -> list[str]:
        if len(set(events)) != len(events):
            raise ValueError("events contain duplicates; list each status once")
        return events


JOB_SPEC_EXAMPLE: dict[str, Any] = {
    "name": "dinov2s-to-deit-tiny",
    "teacher": {"model": "vit_small_patch14_dinov2", "weights": "timm"},
    "student": {"model": "deit_tiny_patch16_224", "weights": "none"},
    "source": {"dataset": "synth-source", "split": "train"},
    "targets": [{"dataset": "synth-fog", "split": "val"}],
    "method": "gkd",
    "stage1": {"steps": 200, "batch_size": 16, "image_size": 224},
    "stage2": {"steps": 400, "batch_size": 4, "crop_size": 224, "head": "fpn"},
    "references": ["student_frozen"],
    "seed": 0,
    "resources": {"queue": "gpu", "gpus": 1, "precision": "bf16", "max_runtime_s": 86400},
}


class JobSpec(_Strict):
    """Everything a job needs; stored verbatim (as JSON) on the job row."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [JOB_SPEC_EXAMPLE]}
    )

    name: str = Field(min_length=1, max_length=200)
    teacher: ModelRef
    student: ModelRef
    source: DataRef
    targets: list[TargetRef] = Field(min_length=1, max_length=16)
    method: Method = "gkd"
    proxy: DataRef | None = Field(default=None, description="Unlabelled images for stage 1; default: the source")
    stage1: Stage1Spec = Field(default_factory=Stage1Spec)
    stage2: Stage2Spec = Field(default_factory=Stage2Spec)
    references: list[Reference] = Field(default_factory=list, max_length=3)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    resources: Resources = Field(default_factory=Resources)
    export: ExportSpec = Field(default_factory=ExportSpec)
    notify: NotifySpec | None = Field(default=None, description="Signed webhook on status changes")

    @field_validator("targets")
    @classmethod
    def _targets_differ_from_source(cls, targets: list[TargetRef], info: ValidationInfo) -> list[TargetRef]:
        source = info.data.get("source")
        seen: set[tuple[str, str]] = set()
        for index, target in enumerate(targets):
            key = (target.dataset, target.split)
            if source is not None and key == (source.dataset, source.split):
                raise ValueError(
                    f"targets[{index}] ({target.dataset}/{target.split}) equals the source; "
                    "a target must be another domain or split - remove it or pick another split"
                )
            if key in seen:
                raise ValueError(f"targets[{index}] ({target.dataset}/{target.split}) is listed twice; remove it")
            seen.add(key)
        return targets

    @field_validator("stage2")
    @classmethod
    def _finetune_only_without_teacher(cls, stage2: Stage2Spec, info: ValidationInfo) -> Stage2Spec:
        method = info.data.get("method")
        if stage2.finetune and method is not None and gkd_catalog.method(method).encoder != "either":
            choosers = " or ".join(repr(m.name) for m in gkd_catalog.METHODS.values() if m.encoder == "either")
            raise ValueError(
                f"stage2.finetune applies to method {choosers} only (got method {method!r}); "
                f"remove it, or use method {choosers}"
            )
        return stage2

    @model_validator(mode="after")
    def _proxy_fields_apply(self) -> JobSpec:
        """A proxy set and step-1a options only mean something to methods with a stage 1."""
        info = gkd_catalog.method(self.method)
        if self.proxy is not None and info.proxy == "unused":
            raise ValueError(
                f"proxy: method {self.method!r} has no stage 1, so a proxy set would be ignored; remove it"
            )
        if self.proxy is None and info.proxy == "only":
            raise ValueError(f"method {self.method!r} distils on a proxy image set only; add proxy")
        if self.stage1.extra_images and (not info.two_stage or info.proxy == "only"):
            raise ValueError(
                f"stage1.extra_images: method {self.method!r} has no source step (1b) to add them to; remove them"
            )
        if self.stage1.proxy_step is not None and self.proxy is None:
            raise ValueError("stage1.proxy_step configures step 1a on the proxy set, but no proxy is given; add proxy")
        return self

    @field_validator("references")
    @classmethod
    def _unique_references(cls, references: list[str]) -> list[str]:
        if len(set(references)) != len(references):
            raise ValueError("references contain duplicates; list each reference once")
        return references

    def datasets(self) -> list[tuple[str, DataRef, bool]]:
        """Every dataset reference: the field path that names it, the reference, and whether it needs labels.

        Stage 1 never reads labels, so the proxy and extra stage-1 images may be images-only sets; the
        source (stage 2, references) and the targets (evaluation) must be labelled.
        """
        refs = [("source", self.source, True)]
        refs += [(f"targets[{i}]", t, True) for i, t in enumerate(self.targets)]
        if self.proxy is not None:
            refs.append(("proxy", self.proxy, False))
        refs += [(f"stage1.extra_images[{i}]", r, False) for i, r in enumerate(self.stage1.extra_images)]
        return refs


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class JobError(BaseModel):
    """Why a job failed: ``user`` (spec or data) or ``infra`` (platform), and the details."""

    reason: str
    detail: str | None = None


CommercialUse = Literal["yes", "restricted", "no", "unknown", "n/a"]


class WeightsLineageRead(BaseModel):
    """Where a model's starting weights come from and their licence (``n/a``: no pretrained weights)."""

    role: str
    model: str
    weights: str
    source: Literal["none", "timm", "uri", "job"]
    licence: str | None
    licence_url: str | None
    commercial: CommercialUse
    training_data: str | None = None
    note: str = ""
    tag: str | None = None
    derived_from_job: str | None = None


class LineageRead(BaseModel):
    """The student's lineage: the teacher's and student's starting weights and the training sets.

    Built from the spec and the curated zoo (service/zoo.py); weights taken from another of the team's jobs
    are traced through that job's spec. ``warnings`` name a teacher whose licence forbids commercial use,
    restricts it, or is unknown.
    """

    teacher: WeightsLineageRead
    student: WeightsLineageRead
    source: str | None
    proxy: str | None
    extra_images: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class JobRead(_Read):
    """A job as the API returns it."""

    id: str
    name: str
    method: str
    status: str
    phase: str | None
    progress: float
    eta_s: float | None
    attempt: int
    max_attempts: int
    cancel_requested: bool
    spec: dict[str, Any]
    error: JobError | None = None
    waiting_reason: str | None = Field(
        default=None,
        description='Why a queued job has not started yet, e.g. "waiting: team at its limit of 2 running jobs" '
        "(GKD_TEAM_MAX_RUNNING_JOBS / GKD_TEAM_MAX_GPUS); it starts by itself when the team's capacity frees. "
        "Null when nothing holds it back, and once it runs",
    )
    summary: dict[str, Any] | None
    plan: list[dict[str, Any]] | None = Field(
        default=None,
        description="GET /v1/jobs/{id} only: each training stage with its images per epoch, global batch, "
        "epochs and optimizer steps (epochs turned into steps over the registered sets)",
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    lineage: LineageRead | None = Field(
        default=None,
        description="Licence lineage of the student (teacher's and student's weights, training sets); "
        "given when one job is read or submitted, null in listings",
    )

    @classmethod
    def from_job(cls, job: Any, *, lineage: dict[str, Any] | None = None) -> JobRead:
        """Build from an ORM Job, folding the error columns into one object (and the lineage, when given)."""
        read = cls.model_validate(job)
        if read.status != "queued":
            read.waiting_reason = None
        if job.error_reason:
            read.error = JobError(reason=job.error_reason, detail=job.error_detail)
        if lineage is not None:
            read.lineage = LineageRead.model_validate(lineage)
        return read


class JobPage(BaseModel):
    """One page of a listing; pass ``next_page_token`` back to get the next one (null at the end)."""

    items: list[JobRead]
    next_page_token: str | None


class JobEventRead(_Read):
    """One lifecycle event."""

    time: datetime
    type: str
    message: str
    attempt: int
    from_status: str | None
    to_status: str | None


class MetricRead(_Read):
    """One point of a loss curve."""

    stage: str
    step: int
    epoch: int | None
    name: str
    value: float


class ArtifactRead(_Read):
    """A stored job output."""

    name: str
    kind: str
    size: int
    sha256: str
    created_at: datetime


class ArtifactLink(BaseModel):
    """Where to fetch an artifact from, for clients that should not carry the API key there (a browser).

    ``requires_key`` is false for a presigned object-store URL: open it as it is, until ``expires_at``, and
    the file arrives under ``name``. It is true where the store has no URLs (local artifacts): the URL is
    then this API's own download route, which needs the usual Authorization header.
    """

    name: str
    size: int
    sha256: str
    url: str
    requires_key: bool
    expires_at: datetime | None


class EvaluationCreate(_Strict):
    """Evaluate a finished job's student on more domains."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"targets": [{"dataset": "synth-night", "split": "val"}]}]}
    )

    targets: list[TargetRef] = Field(min_length=1, max_length=16)


class EvaluationRead(_Read):
    """An evaluation; ``results`` maps each domain to {miou, per_class_iou, pixel_accuracy, images}."""

    id: str
    job_id: str
    status: str
    targets: list[dict[str, Any]]
    results: dict[str, Any] | None
    error: str | None
    error_reason: str | None = Field(default=None, description="`user` (spec or data) or `infra` (platform)")
    attempt: int = 0
    max_attempts: int = 3
    cancel_requested: bool = False
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class DatasetCreate(_Strict):
    """Register a dataset: a name unique within the team, its layout and where it lives."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"name": "synth-source", "layout": "folder", "uri": "file:///data/synth/source"}]
        },
    )

    name: str = Field(min_length=1, max_length=100, description="Letters, digits, '_', '-', '.'")
    layout: Layout
    uri: str = Field(
        min_length=1, max_length=2048, description="file:///path (under allowed roots) or s3://bucket/prefix"
    )
    classes: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    options: dict[str, LayoutOptionValue] = Field(
        default_factory=dict,
        max_length=16,
        description='Layout options (GET /v1/catalog lists each layout\'s), e.g. {"condition": "fog"} for acdc; '
        "stored with the dataset and used by the validator and by every job that reads it",
    )

    @field_validator("options")
    @classmethod
    def _options_of_layout(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        layout = info.data.get("layout")
        if layout is None:  # the layout itself failed; its own error says so
            return value
        takes = gkd_catalog.LAYOUTS[layout].options
        unknown = sorted(set(value) - set(takes))
        if unknown:
            allowed = ", ".join(takes) if takes else "none"
            raise ValueError(f"layout {layout!r} takes no option(s) {unknown}; allowed: {allowed}")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("name must start with a letter or digit and use only letters, digits, '_', '-', '.'")
        return value

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        if not (value.startswith("file://") or value.startswith("s3://")):
            raise ValueError(f"uri must start with file:// or s3://; got {value!r}")
        return value


class DatasetRead(_Read):
    """A registered dataset with its validation report."""

    name: str
    layout: str
    uri: str
    classes: list[str] | None
    options: dict[str, Any] = Field(default_factory=dict, description="Layout options the dataset is read with")
    status: str = Field(description="validating (a big set, still being checked), valid or invalid")
    report: dict[str, Any] = Field(
        description="The validation report; while validating, only its validation_id and started_at"
    )
    created_at: datetime
    updated_at: datetime


class WeightsLicenceInfo(BaseModel):
    """The licence of the pretrained weights timm serves for a model (``weights: timm``, its default tag)."""

    tag: str = Field(description="timm pretrained tag the licence is about")
    licence: str = Field(description="SPDX identifier or licence name")
    url: str = Field(description="Where the licence is stated")
    commercial: CommercialUse = Field(description="Whether the licence allows commercial use")
    training_data: str
    note: str = ""


class ModelInfo(BaseModel):
    """One entry of the curated model zoo."""

    name: str
    family: str
    kind: Literal["vit", "cnn", "hierarchical"]
    params_m: float
    embed_dim: int
    patch_size: int | None
    feature_api: str
    roles: list[Literal["teacher", "student"]]
    weights: WeightsLicenceInfo | None = None


class KeyCreated(BaseModel):
    """A new API key (shown once)."""

    team: str
    key: str
    prefix: str


class JobEventList(BaseModel):
    """A job's events, oldest first."""

    items: list[JobEventRead]


class MetricList(BaseModel):
    """Loss-curve rows. With ``after``, pass ``next_after`` back for the rows written since (and the rest of
    a long job while ``more``); ``since_step=last_step`` with a ``stage`` also polls one stage."""

    items: list[MetricRead]
    last_step: int | None
    next_after: int | None = Field(
        default=None, description="With `after`: the cursor for the next call (the last row's position)"
    )
    more: bool = Field(default=False, description="More rows match than this page holds; ask again to get them")


class JobLogRead(BaseModel):
    """One attempt's stored training log."""

    attempt: int
    size: int = Field(description="Bytes stored (the end of the output when it was longer)")


class JobLogList(BaseModel):
    """A job's training logs, by attempt."""

    items: list[JobLogRead]


class ArtifactList(BaseModel):
    """A job's stored outputs."""

    items: list[ArtifactRead]


class EvaluationList(BaseModel):
    """A job's evaluations, newest first."""

    items: list[EvaluationRead]


class DatasetList(BaseModel):
    """The team's datasets by name."""

    items: list[DatasetRead]


class ModelList(BaseModel):
    """The curated model zoo."""

    items: list[ModelInfo]


class CatalogEntry(BaseModel):
    """A named component (head, stage-1 head, reference row) and what it is."""

    name: str
    summary: str


class LayoutEntry(CatalogEntry):
    """A dataset layout: whether it carries labels and which options it takes."""

    labels: bool
    options: list[str]


class MethodEntry(BaseModel):
    """A distillation method and the traits the service plans a job by."""

    name: str
    title: str
    summary: str
    stages: list[str]
    two_stage: bool
    teacher: str = Field(description="unused, tokens (stage-1 token distillation), logits or features")
    stage1_head: str | None
    encoder: str = Field(description="frozen, trainable, or either (stage2.finetune picks)")


class CatalogRead(BaseModel):
    """Every name a JobSpec or dataset registration may use, from the one catalogue the worker agrees with."""

    methods: list[MethodEntry]
    heads: list[CatalogEntry]
    stage1_heads: list[CatalogEntry]
    layouts: list[LayoutEntry]
    references: list[CatalogEntry]
    phases: list[str]


class ApiKeyRead(BaseModel):
    """An API key as listed: never the secret, only the prefix that names it."""

    prefix: str
    team: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_key(cls, key: Any) -> ApiKeyRead:
        return cls(
            prefix=key.prefix, team=key.team.name, admin=key.admin, created_at=key.created_at, revoked_at=key.revoked_at
        )


class ApiKeyList(BaseModel):
    """Keys the caller may see: its team's, or every team's for an admin key."""

    items: list[ApiKeyRead]
