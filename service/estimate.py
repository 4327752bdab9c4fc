"""What a job would cost before it is queued: steps, FLOPs, peak memory and GPU-hours per phase.

Steps come from the job plan (service/plan.py). FLOPs and activation bytes per image come from the cost table
that ``python -m bench.cost_table`` measures on the real gkd_core models (gkd_catalog.costs; the API has no
torch), and GPU-hours from the FLOP/s bench/gpu_check.py measured per GPU kind (gkd_catalog.throughput).
What the tables cannot price is reported as unknown with the reason, never guessed.

How one training step is counted (forward FLOPs per image x global batch):

* stage 1 (steps 1a, 1b): teacher forward (frozen, no backward) + 3 x student forward over the clean batch plus
  the masked rows (backward costs about twice the forward) + 3 x the CLS and two token heads;
* stage 2 and reference rows: 1 x a frozen encoder's forward, 3 x a trained one's, 3 x the head's, plus the
  teacher's forward where the method distils from it while stage 2 trains (its ``teacher`` trait).

Peak memory per GPU is rough, within about a factor of two: parameters in fp32 (trained ones also carry a
gradient and AdamW's two moments: 16 bytes each), plus the fp32 activations autograd keeps for the backward of
one GPU's share of the batch. bf16 autocast keeps many of those in 16 bits (less), while CUDA's context, the
allocator's slack, the loss terms and evaluation buffers are not counted (more).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

import gkd_catalog
from gkd_catalog.costs import CostUnknown, HeadCost, ModelCost, cls_head_cost, head_cost, model_cost, token_head_cost
from gkd_catalog.throughput import known_kinds, load_throughput, phase_key, rate
from service.datasets import find_dataset
from service.plan import PlanStep, job_plan
from service.schemas import JobSpec, ModelRef

TRAINED_BYTES_PER_PARAM = 16  # fp32 weight + gradient + AdamW exp_avg + exp_avg_sq
FROZEN_BYTES_PER_PARAM = 4
GIB = 2**30


class GpuHours(BaseModel):
    """GPU-hours on one GPU kind, or why there is no figure (``hours`` null, ``reason`` set)."""

    kind: str
    hours: float | None
    reason: str | None = None


class PhaseEstimate(BaseModel):
    """One training stage of the plan with what it costs; null figures come with ``unknown`` saying why."""

    stage: str = Field(description="stage1a (proxy), stage1b (source), stage2, or a reference row ref_<name>")
    images: int | None = Field(description="Images (stage 1) or labelled pairs (stage 2) per epoch")
    batch_size: int = Field(description="Global batch (all GPUs)")
    epochs: float | None
    steps: int | None
    flops_per_step: float | None = Field(description="FLOPs of one optimizer step over the global batch")
    total_flops: float | None
    peak_memory_gib: float | None = Field(description="Rough peak memory per GPU (see the notes)")
    gpu_hours: list[GpuHours] = Field(default_factory=list)
    unknown: str | None = Field(default=None, description="Why FLOPs or memory are null")


class JobEstimate(BaseModel):
    """A job's resolved plan and its cost, computed without storing or queueing anything."""

    phases: list[PhaseEstimate]
    total_flops: float | None = Field(description="Sum over the phases; null when one of them is unknown")
    gpu_hours: list[GpuHours] = Field(description="Whole-job GPU-hours per GPU kind (requested, else every measured)")
    notes: list[str] = Field(description="How the figures were made and how rough they are")


@dataclass
class _Costs:
    """Everything one job's phases are priced with (resolved once)."""

    spec: JobSpec
    teacher: ModelCost | CostUnknown
    student: ModelCost | CostUnknown
    classes: int | None
    notes: list[str] = field(default_factory=list)

    def need(self, value: ModelCost | CostUnknown) -> ModelCost:
        if isinstance(value, CostUnknown):
            raise value
        return value

    def head(self, model: ModelCost) -> HeadCost:
        s2 = self.spec.stage2
        if s2.head_queries is not None or s2.head_layers is not None:
            raise CostUnknown(
                f"the cost table holds the {s2.head} head at its default queries and layers; "
                "head_queries / head_layers are not priced"
            )
        return head_cost(s2.head, model.name)

    def num_classes(self) -> int:
        if self.classes is None:
            raise CostUnknown("the source dataset names no classes (validation report or registration)")
        return self.classes


def _model(ref: ModelRef) -> ModelCost | CostUnknown:
    if ref.overrides:
        return CostUnknown(
            f"{ref.model} with overrides {sorted(ref.overrides)} is another architecture than the cost table's "
            "(which holds the zoo models as timm builds them)"
        )
    try:
        return model_cost(ref.model)
    except CostUnknown as exc:
        return exc


def _classes(session: Session, team_id: str, spec: JobSpec) -> int | None:
    """Classes of the source set: from its validation report, else the names given at registration."""
    dataset = find_dataset(session=session, team_id=team_id, name=spec.source.dataset)
    if dataset is None:
        return None
    names = ((dataset.report or {}).get("classes") or {}).get("names") or dataset.classes
    return len(names) if isinstance(names, list) and names else None


@dataclass(frozen=True)
class _Step:
    """One optimizer step: FLOPs over the global batch, and bytes per GPU (fixed and per image of its share)."""

    flops: float
    fixed_bytes: float
    bytes_per_image: float


def _stage1(costs: _Costs, plan: PlanStep) -> _Step:
    """Steps 1a/1b: teacher forward, student forward+backward over clean and masked views, three heads."""
    s1 = costs.spec.stage1
    student, teacher = costs.need(costs.student), costs.need(costs.teacher)
    proxy = plan.stage == "stage1a"
    size = (s1.step_1a().image_size if proxy else s1.image_size) or s1.image_size
    patch = s1.step_1a().student_patch_size if proxy else None
    s_patch = (patch or student.cell) if student.vit else None
    tokens = round(student.cells(size, s_patch))
    # A ViT teacher of a ViT student runs at the student's patch (gkd_core.models.teacher.align_teacher_to_student).
    t_patch = s_patch if (teacher.vit and student.vit) else None
    batch = plan.batch_size
    masked = int(batch * s1.mask_probability) if int(tokens * s1.mask_ratio) > 0 else 0
    cls_f, cls_b, cls_p = cls_head_cost(student.embed_dim, teacher.embed_dim)
    tok_f, tok_b, tok_p = token_head_cost(s1.head, tokens, student.embed_dim, teacher.embed_dim)
    flops = (
        batch * teacher.forward_flops(size, t_patch)
        + 3 * (batch + masked) * student.forward_flops(size, s_patch)
        + 3 * batch * (cls_f + 2 * tok_f)
    )
    per_image = student.saved_bytes(size, s_patch) * (batch + masked) / batch + cls_b + 2 * tok_b
    fixed = TRAINED_BYTES_PER_PARAM * (student.params + cls_p + 2 * tok_p) + FROZEN_BYTES_PER_PARAM * teacher.params
    return _Step(flops=flops, fixed_bytes=fixed, bytes_per_image=per_image)


def _seg(costs: _Costs, batch: int, model: ModelCost, trained_encoder: bool, teacher_forward: float) -> _Step:
    """A segmentation step: encoder (frozen: forward only), head forward+backward, teacher targets if any."""
    s2 = costs.spec.stage2
    head, classes = costs.head(model), costs.num_classes()
    side, channels = s2.crop_size, s2.head_channels
    encoder_factor = 3 if trained_encoder else 1
    flops = batch * (
        encoder_factor * model.forward_flops(side) + 3 * head.forward_flops(side, classes, channels) + teacher_forward
    )
    per_image = head.saved_bytes(side, classes, channels) + (model.saved_bytes(side) if trained_encoder else 0.0)
    head_params = head.params(classes, channels)
    encoder_bytes = TRAINED_BYTES_PER_PARAM if trained_encoder else FROZEN_BYTES_PER_PARAM
    fixed = TRAINED_BYTES_PER_PARAM * head_params + encoder_bytes * model.params
    return _Step(flops=flops, fixed_bytes=fixed, bytes_per_image=per_image)


def _teacher_targets(costs: _Costs, use: str) -> tuple[float, float]:
    """(FLOPs per image, frozen parameters) of the teacher while stage 2 trains, by the method's teacher trait."""
    if use not in TEACHER_IN_STAGE2:
        raise CostUnknown(f"no cost rule for teacher use {use!r}; add one to service/estimate.py")
    return TEACHER_IN_STAGE2[use](costs)


def _teacher_logits(costs: _Costs) -> tuple[float, float]:
    teacher = costs.need(costs.teacher)
    head = costs.head(teacher)
    side, classes, channels = costs.spec.stage2.crop_size, costs.num_classes(), costs.spec.stage2.head_channels
    return (
        teacher.forward_flops(side) + head.forward_flops(side, classes, channels),
        teacher.params + head.params(classes, channels),
    )


def _teacher_features(costs: _Costs) -> tuple[float, float]:
    teacher = costs.need(costs.teacher)
    return teacher.forward_flops(costs.spec.stage2.crop_size), float(teacher.params)


TEACHER_IN_STAGE2: dict[str, Callable[[_Costs], tuple[float, float]]] = {
    "unused": lambda costs: (0.0, 0.0),
    "tokens": lambda costs: (0.0, 0.0),  # its tokens were distilled in stage 1; stage 2 never runs it
    "logits": _teacher_logits,
    "features": _teacher_features,
}
"""The teacher's share of a stage-2 step for each gkd_catalog.TeacherUse (tests check every trait has one)."""


def _stage2(costs: _Costs, plan: PlanStep) -> _Step:
    info = gkd_catalog.method(costs.spec.method)
    trained = info.encoder == "trainable" or (info.encoder == "either" and costs.spec.stage2.finetune)
    teacher_flops, teacher_params = _teacher_targets(costs, info.teacher)
    step = _seg(costs, plan.batch_size, costs.need(costs.student), trained, teacher_flops)
    return _Step(step.flops, step.fixed_bytes + FROZEN_BYTES_PER_PARAM * teacher_params, step.bytes_per_image)


# Reference rows: which backbone the row trains a head on, and whether that backbone trains with it.
REFERENCE_ROWS: dict[str, tuple[str, bool]] = {
    "teacher": ("teacher", False),
    "student_frozen": ("student", False),
    "student_finetuned": ("student", True),
}
"""Every gkd_catalog.REFERENCES row as (backbone role, encoder trained); tests check the keys match."""


def _reference(costs: _Costs, plan: PlanStep) -> _Step:
    name = plan.stage.removeprefix("ref_")
    if name not in REFERENCE_ROWS:
        raise CostUnknown(f"reference row {name!r} has no cost rule; add it to service/estimate.py")
    role, trained = REFERENCE_ROWS[name]
    return _seg(costs, plan.batch_size, costs.need(getattr(costs, role)), trained, 0.0)


PHASE_PRICES: dict[str, Callable[[_Costs, PlanStep], _Step]] = {
    "stage1a": _stage1,
    "stage1b": _stage1,
    "stage2": _stage2,
}
"""How each plan stage is priced; every other stage is a reference row (ref_<name>)."""


def _price(costs: _Costs, plan: PlanStep) -> _Step:
    return PHASE_PRICES.get(plan.stage, _reference)(costs, plan)


def _hours(total: float | None, key: str, kinds: list[str], table: dict[str, Any]) -> list[GpuHours]:
    rows = []
    for kind in kinds:
        try:
            per_second = rate(kind, key, table)
        except CostUnknown as exc:
            rows.append(GpuHours(kind=kind, hours=None, reason=str(exc)))
            continue
        if total is None:
            rows.append(GpuHours(kind=kind, hours=None, reason="the phase's FLOPs are unknown"))
        else:
            rows.append(GpuHours(kind=kind, hours=total / per_second / 3600))
    return rows


def _phase(costs: _Costs, plan: PlanStep, kinds: list[str], table: dict[str, Any]) -> PhaseEstimate:
    row = PhaseEstimate(
        stage=plan.stage, images=plan.images, batch_size=plan.batch_size, epochs=plan.epochs, steps=plan.steps,
        flops_per_step=None, total_flops=None, peak_memory_gib=None,
    )  # fmt: skip
    try:
        step = _price(costs, plan)
    except CostUnknown as exc:
        row.unknown = str(exc)
    else:
        share = math.ceil(plan.batch_size / costs.spec.resources.gpus)
        row.flops_per_step = step.flops
        row.peak_memory_gib = (step.fixed_bytes + share * step.bytes_per_image) / GIB
        if plan.steps is None:
            row.unknown = "the number of steps is unknown (epochs over a set whose size is not known)"
        else:
            row.total_flops = step.flops * plan.steps
    row.gpu_hours = _hours(row.total_flops, phase_key(plan.stage, costs.spec.stage2.head), kinds, table)
    return row


def _totals(phases: list[PhaseEstimate], kinds: list[str]) -> list[GpuHours]:
    totals = []
    for index, kind in enumerate(kinds):
        rows = [(p.stage, p.gpu_hours[index]) for p in phases]
        missing = {stage: h.reason or "unknown" for stage, h in rows if h.hours is None}
        if missing:
            reasons = set(missing.values())
            # One shared reason (an unmeasured kind) is said once; otherwise each stage says its own.
            text = reasons.pop() if len(reasons) == 1 else "; ".join(f"{st}: {why}" for st, why in missing.items())
            totals.append(GpuHours(kind=kind, hours=None, reason=text))
        else:
            totals.append(GpuHours(kind=kind, hours=sum(h.hours or 0.0 for _, h in rows)))
    return totals


NOTES = (
    "FLOPs: FlopCounterMode's count (2 per multiply-add of matmuls, convolutions and attention) of the real "
    "models, fitted per image by python -m bench.cost_table; a backward pass counts as two forwards.",
    "Peak memory per GPU is rough (within about 2x): fp32 parameters, +gradients and AdamW state for the trained "
    "ones, +fp32 activations kept for backward of one GPU's share of the batch; bf16 autocast keeps many in 16 "
    "bits, while CUDA context, allocator slack, losses and evaluation buffers are not counted.",
    "GPU-hours: total FLOPs / the FLOP/s bench/gpu_check.py measured on that GPU kind for the phase (a DINOv2 "
    "ViT-B/14 -> DeiT-S/16 pair at 512 px); smaller models or batches usually run at a lower rate. Evaluation "
    "and export are not included.",
)


def estimate_job(
    *,
    session: Session,
    team_id: str,
    spec: JobSpec,
    gpu_kinds: list[str] | None = None,
    throughput: dict[str, Any] | None = None,
) -> JobEstimate:
    """Price every stage of the job's plan; ``gpu_kinds`` defaults to every kind the throughput table measured."""
    table = throughput if throughput is not None else load_throughput()
    kinds = list(dict.fromkeys(gpu_kinds)) if gpu_kinds else known_kinds(table)
    costs = _Costs(spec=spec, teacher=_model(spec.teacher), student=_model(spec.student),
                   classes=_classes(session, team_id, spec))  # fmt: skip
    phases = [_phase(costs, plan, kinds, table) for plan in job_plan(session=session, team_id=team_id, spec=spec)]
    totals = [p.total_flops for p in phases]
    notes = list(NOTES)
    if not kinds:
        notes.append(
            "No GPU kind has a throughput measurement yet, so no GPU-hours: run bench/gpu_check.py on a GPU "
            "(it files its rates in gkd_catalog/throughput.json), or ask for a kind with gpu_kind."
        )
    return JobEstimate(
        phases=phases,
        total_flops=None if any(t is None for t in totals) else sum(t or 0.0 for t in totals),
        gpu_hours=_totals(phases, kinds),
        notes=notes,
    )
