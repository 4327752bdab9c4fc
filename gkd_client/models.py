"""Typed views of the API's JSON: jobs, pages, events, metric rows, artifacts, evaluations.

Parsing is tolerant on purpose: unknown keys are kept in ``raw`` so a newer server never breaks an
older client, and missing optional keys become ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (with ``Z`` or an offset) to datetime; ``None`` stays ``None``."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any, default: int = 0) -> int:
    try:
        return default if value is None else int(value)
    except (TypeError, ValueError):
        return default


@dataclass
class DomainScore:
    """Segmentation metrics of one model on one domain.

    ``onnx`` is the exported ONNX model's parity with the PyTorch one on this domain, exactly as the
    server reports it (``{"miou": ..., "diff_points": ..., "within_tolerance": ...}``), when it does;
    ``deployed`` holds every shipped file's parity by kind (``onnx``, ``int8``: any entry with ``diff_points``).
    """

    miou: float | None
    per_class_iou: list[float | None] = field(default_factory=list)
    pixel_accuracy: float | None = None
    images: int | None = None
    onnx: Any = None
    deployed: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_obj(cls, obj: Any) -> DomainScore:
        """Accept a metrics dict or a bare mIoU number."""
        if isinstance(obj, dict):
            return cls(
                miou=_float(obj.get("miou")),
                per_class_iou=[_float(v) for v in obj.get("per_class_iou") or []],
                pixel_accuracy=_float(obj.get("pixel_accuracy")),
                images=obj.get("images"),
                onnx=obj.get("onnx"),
                deployed={k: v for k, v in obj.items() if isinstance(v, dict) and "diff_points" in v},
            )
        return cls(miou=_float(obj))


def _scores(obj: Any) -> dict[str, DomainScore]:
    if not isinstance(obj, dict):
        return {}
    return {str(k): DomainScore.from_obj(v) for k, v in obj.items()}


@dataclass
class Summary:
    """A finished job's results: the student's per-domain scores and the reference rows."""

    student: dict[str, DomainScore] = field(default_factory=dict)
    references: dict[str, dict[str, DomainScore]] = field(default_factory=dict)
    # The shipped files (``onnx``, ``int8``) scored per domain by onnxruntime.
    deployed: dict[str, dict[str, DomainScore]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_obj(cls, obj: Any) -> Summary:
        """Read ``{student: {domain: m}, references: {name: {domain: m}}}``; other keys stay in raw."""
        if not isinstance(obj, dict):
            return cls()
        student = _scores(obj.get("student", obj.get("domains", {})))
        refs = obj.get("references") or {}
        deployed = obj.get("deployed") or {}
        onnx = obj.get("onnx")  # parity may also come as one top-level {domain: parity} object
        if isinstance(onnx, dict):
            for domain, parity in onnx.items():
                if domain in student and student[domain].onnx is None:
                    student[domain].onnx = parity
        return cls(
            student=student,
            references={str(k): _scores(v) for k, v in refs.items()} if isinstance(refs, dict) else {},
            deployed={str(k): _scores(v) for k, v in deployed.items()} if isinstance(deployed, dict) else {},
            raw=obj,
        )


@dataclass
class Job:
    """One distillation job as the API reports it.

    ``lineage`` (single-job reads only) is the student's licence lineage: ``teacher`` and ``student``
    (model, weights, licence, licence_url, commercial, training_data, note), the training sets and ``warnings``.
    ``waiting_reason`` says why a queued job has not started yet (its team is at a limit), else None.
    ``replayed`` (submits only) says the Idempotency-Key had created this job before: nothing new was queued.
    """

    id: str
    name: str | None
    status: str
    phase: str | None = None
    progress: float = 0.0
    eta_s: float | None = None
    attempt: int = 0
    max_attempts: int | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    error_reason: str | None = None
    error_detail: str | None = None
    waiting_reason: str | None = None
    summary: Summary = field(default_factory=Summary)
    cancel_requested: bool = False
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lineage: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # True when a submit with an Idempotency-Key answered with the job that key created before.
    replayed: bool = False

    @property
    def terminal(self) -> bool:
        """True once the job can change no more (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES

    @property
    def method(self) -> str | None:
        """The distillation method named in the spec."""
        value = self.spec.get("method") or self.raw.get("method")
        return None if value is None else str(value)

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> Job:
        """Build from a JobRead body; ``error`` may be nested ``{reason, detail}`` or flat."""
        nested = obj.get("error")
        error: dict[str, Any] = nested if isinstance(nested, dict) else {}
        return cls(
            id=str(obj["id"]),
            name=obj.get("name"),
            status=str(obj.get("status", "unknown")),
            phase=obj.get("phase"),
            progress=_float(obj.get("progress")) or 0.0,
            eta_s=_float(obj.get("eta_s")),
            attempt=_int(obj.get("attempt")),
            max_attempts=obj.get("max_attempts"),
            spec=obj.get("spec") or {},
            error_reason=obj.get("error_reason") or error.get("reason"),
            error_detail=obj.get("error_detail") or error.get("detail"),
            waiting_reason=obj.get("waiting_reason"),
            summary=Summary.from_obj(obj.get("summary")),
            cancel_requested=bool(obj.get("cancel_requested", False)),
            created_at=parse_time(obj.get("created_at")),
            started_at=parse_time(obj.get("started_at")),
            finished_at=parse_time(obj.get("finished_at")),
            lineage=obj.get("lineage") if isinstance(obj.get("lineage"), dict) else None,
            raw=obj,
        )


@dataclass
class JobPage:
    """One page of ``GET /v1/jobs``; pass ``next_page_token`` back to get the next one."""

    items: list[Job]
    next_page_token: str | None

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> JobPage:
        return cls(items=[Job.from_obj(j) for j in obj.get("items") or []], next_page_token=obj.get("next_page_token"))


@dataclass
class Event:
    """One row of a job's lifecycle history."""

    time: datetime | None
    type: str
    message: str
    attempt: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> Event:
        return cls(
            time=parse_time(obj.get("time") or obj.get("created_at") or obj.get("at")),
            type=str(obj.get("type") or obj.get("kind") or ""),
            message=str(obj.get("message") or ""),
            attempt=obj.get("attempt"),
            raw=obj,
        )


@dataclass(frozen=True)
class MetricRow:
    """One logged scalar: e.g. stage ``stage1``, step 100, name ``loss``, value 0.42."""

    stage: str
    step: int
    name: str
    value: float
    epoch: int | None = None

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> MetricRow:
        return cls(
            stage=str(obj.get("stage", "")),
            step=_int(obj.get("step")),
            name=str(obj.get("name", "")),
            value=_float(obj.get("value")) or 0.0,
            epoch=obj.get("epoch"),
        )


@dataclass
class MetricPage:
    """One answer of GET /v1/jobs/{id}/metrics read with a cursor: its rows, the cursor for the next call
    (``after=next_after``) and whether more rows were waiting already."""

    rows: list[MetricRow]
    next_after: int | None
    more: bool

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> MetricPage:
        items = obj.get("items") or []
        cursor = obj.get("next_after")
        return cls(
            rows=[MetricRow.from_obj(r) for r in items if isinstance(r, dict)],
            next_after=None if cursor is None else _int(cursor),
            more=bool(obj.get("more", False)),
        )


@dataclass
class Artifact:
    """A stored output of a job (student weights, ONNX, model card, report, checkpoint)."""

    job_id: str
    name: str
    kind: str
    size: int | None
    sha256: str | None
    created_at: datetime | None = None

    @classmethod
    def from_obj(cls, obj: dict[str, Any], job_id: str) -> Artifact:
        return cls(
            job_id=str(obj.get("job_id") or job_id),
            name=str(obj["name"]),
            kind=str(obj.get("kind", "")),
            size=obj.get("size"),
            sha256=obj.get("sha256"),
            created_at=parse_time(obj.get("created_at")),
        )


@dataclass
class ArtifactLink:
    """Where an artifact can be fetched: a presigned URL anyone may open until ``expires_at``, or, with
    ``requires_key``, the API's own download route, which needs the API key (stores without URLs)."""

    name: str
    url: str
    requires_key: bool
    size: int | None = None
    sha256: str | None = None
    expires_at: datetime | None = None

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> ArtifactLink:
        return cls(
            name=str(obj["name"]),
            url=str(obj["url"]),
            requires_key=bool(obj.get("requires_key", True)),
            size=obj.get("size"),
            sha256=obj.get("sha256"),
            expires_at=parse_time(obj.get("expires_at")),
        )


@dataclass
class Evaluation:
    """An evaluation of a job's student on more domains."""

    id: str
    job_id: str | None
    status: str
    targets: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, DomainScore] = field(default_factory=dict)
    error: str | None = None
    error_reason: str | None = None
    attempt: int = 0
    created_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> Evaluation:
        error = obj.get("error")
        if isinstance(error, dict):
            error = error.get("detail") or error.get("reason")
        return cls(
            id=str(obj["id"]),
            job_id=obj.get("job_id"),
            status=str(obj.get("status", "unknown")),
            targets=list(obj.get("targets") or []),
            results=_scores(obj.get("results")),
            error=None if error is None else str(error),
            error_reason=obj.get("error_reason"),
            attempt=_int(obj.get("attempt")),
            created_at=parse_time(obj.get("created_at")),
            raw=obj,
        )


@dataclass(frozen=True)
class DatasetProblem:
    """One thing wrong with a dataset: ``kind`` (layout, missing_mask, size_mismatch, ...), where, and why."""

    kind: str
    split: str | None
    name: str | None
    detail: str

    @classmethod
    def from_obj(cls, obj: Any) -> DatasetProblem:
        if not isinstance(obj, dict):
            return cls(kind="problem", split=None, name=None, detail=str(obj))
        return cls(
            kind=str(obj.get("kind") or "problem"),
            split=obj.get("split"),
            name=obj.get("name"),
            detail=str(obj.get("detail") or ""),
        )


@dataclass
class SplitCounts:
    """One split of a validation report: files found, complete pairs, decoded masks, label values, sizes.

    ``image_size`` is ``{"count", "width": {"min", "max", "median"}, "height": {...}}`` or None.
    """

    images: int = 0
    masks: int = 0
    pairs: int = 0
    masks_checked: int = 0
    label_values: list[int] = field(default_factory=list)
    image_size: dict[str, Any] | None = None

    @classmethod
    def from_obj(cls, obj: Any) -> SplitCounts:
        if not isinstance(obj, dict):
            return cls()
        size = obj.get("image_size")
        return cls(
            images=_int(obj.get("images")),
            masks=_int(obj.get("masks")),
            pairs=_int(obj.get("pairs")),
            masks_checked=_int(obj.get("masks_checked")),
            label_values=[_int(v) for v in obj.get("label_values") or []],
            image_size=size if isinstance(size, dict) else None,
        )


@dataclass
class DatasetReport:
    """What the server found when it validated a dataset at registration."""

    ok: bool = False
    labels: bool = True
    layout: str | None = None
    root: str | None = None
    classes: list[str] | None = None
    ignore_index: int | None = None
    splits: dict[str, SplitCounts] = field(default_factory=dict)
    problems: list[DatasetProblem] = field(default_factory=list)
    problem_counts: dict[str, int] = field(default_factory=dict)
    label_sample: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def total_problems(self) -> int:
        """Every problem found (the report stores only the first ones of each kind)."""
        return max(sum(self.problem_counts.values()), len(self.problems))

    @classmethod
    def from_obj(cls, obj: Any) -> DatasetReport:
        if not isinstance(obj, dict):
            return cls()
        classes = obj.get("classes")
        names = classes.get("names") if isinstance(classes, dict) else None
        splits = obj.get("splits")
        counts = obj.get("problem_counts")
        sample = obj.get("label_sample")
        return cls(
            ok=bool(obj.get("ok", False)),
            labels=bool(obj.get("labels", True)),
            layout=obj.get("layout"),
            root=obj.get("root"),
            classes=[str(n) for n in names] if isinstance(names, list) else None,
            ignore_index=classes.get("ignore_index") if isinstance(classes, dict) else None,
            splits={str(k): SplitCounts.from_obj(v) for k, v in splits.items()} if isinstance(splits, dict) else {},
            problems=[DatasetProblem.from_obj(p) for p in obj.get("problems") or []],
            problem_counts={str(k): _int(v) for k, v in counts.items()} if isinstance(counts, dict) else {},
            label_sample=None if sample is None else _int(sample),
            raw=obj,
        )


@dataclass
class Dataset:
    """A registered dataset: where it lives, its layout, and the validation report kept with it."""

    name: str
    layout: str
    uri: str
    status: str
    classes: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    report: DatasetReport = field(default_factory=DatasetReport)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """True when validation found no problem (jobs may use it)."""
        return self.status == "valid"

    @property
    def validating(self) -> bool:
        """True while the server is still validating it (a big set answered before its validation ended)."""
        return self.status == "validating"

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> Dataset:
        classes = obj.get("classes")
        return cls(
            name=str(obj["name"]),
            layout=str(obj.get("layout", "")),
            uri=str(obj.get("uri", "")),
            status=str(obj.get("status", "unknown")),
            classes=[str(c) for c in classes] if isinstance(classes, list) else None,
            options=dict(obj["options"]) if isinstance(obj.get("options"), dict) else {},
            report=DatasetReport.from_obj(obj.get("report")),
            created_at=parse_time(obj.get("created_at")),
            updated_at=parse_time(obj.get("updated_at")),
            raw=obj,
        )


@dataclass
class GpuHours:
    """GPU-hours on one GPU kind; ``hours`` is None when the server could not price it, ``reason`` says why."""

    kind: str
    hours: float | None
    reason: str | None = None

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> GpuHours:
        reason = obj.get("reason")
        return cls(
            kind=str(obj.get("kind", "")),
            hours=_float(obj.get("hours")),
            reason=None if reason is None else str(reason),
        )


@dataclass
class PhaseEstimate:
    """One training stage of an estimate: steps, FLOPs, rough peak memory per GPU, GPU-hours per kind."""

    stage: str
    images: int | None
    batch_size: int
    epochs: float | None
    steps: int | None
    flops_per_step: float | None
    total_flops: float | None
    peak_memory_gib: float | None
    gpu_hours: list[GpuHours] = field(default_factory=list)
    unknown: str | None = None

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> PhaseEstimate:
        images, steps = obj.get("images"), obj.get("steps")
        return cls(
            stage=str(obj.get("stage", "")),
            images=None if images is None else _int(images),
            batch_size=_int(obj.get("batch_size")),
            epochs=_float(obj.get("epochs")),
            steps=None if steps is None else _int(steps),
            flops_per_step=_float(obj.get("flops_per_step")),
            total_flops=_float(obj.get("total_flops")),
            peak_memory_gib=_float(obj.get("peak_memory_gib")),
            gpu_hours=[GpuHours.from_obj(h) for h in obj.get("gpu_hours") or []],
            unknown=obj.get("unknown"),
        )


@dataclass
class JobEstimate:
    """What a JobSpec would cost (``POST /v1/jobs:estimate``); nothing was stored or queued."""

    phases: list[PhaseEstimate]
    total_flops: float | None
    gpu_hours: list[GpuHours]
    notes: list[str]
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> JobEstimate:
        return cls(
            phases=[PhaseEstimate.from_obj(p) for p in obj.get("phases") or []],
            total_flops=_float(obj.get("total_flops")),
            gpu_hours=[GpuHours.from_obj(h) for h in obj.get("gpu_hours") or []],
            notes=[str(n) for n in obj.get("notes") or []],
            raw=obj,
        )
