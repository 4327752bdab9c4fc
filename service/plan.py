"""A job's training plan: how many optimizer steps each stage takes, from its schedule and the registered sets.

Epochs become steps with the same formula gkd_core trains with (gkd_catalog.steps_for_epochs), over the
image counts in the datasets' validation reports (images for stage 1, which reads no labels; image/label
pairs for stage 2). The worker's own count at run time can be slightly lower when it skips broken
pairs; it says so in an event.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

import gkd_catalog
from service.models import Dataset
from service.schemas import DataRef, JobSpec

_logger = logging.getLogger(__name__)

Reports = dict[str, dict[str, Any]]


class PlanStep(BaseModel):
    """One training stage of a job: its images per epoch, global batch, schedule and resulting steps."""

    stage: str = Field(description="stage1a (proxy), stage1b (source), stage2, or a reference row ref_<name>")
    images: int | None = Field(description="Images (stage 1) or labelled pairs (stage 2) per epoch; null if unknown")
    batch_size: int
    epochs: float | None
    steps: int | None = Field(description="Optimizer steps; null when epochs are given and the set size is unknown")


def _reports(session: Session, team_id: str, spec: JobSpec) -> Reports:
    """The validation reports of every dataset the spec names, in one query (GET /v1/jobs/{id} runs this)."""
    refs = [spec.source, *spec.stage1.extra_images, *([spec.proxy] if spec.proxy is not None else [])]
    names = {ref.dataset for ref in refs}
    rows = session.execute(
        select(Dataset.name, Dataset.report).where(Dataset.team_id == team_id, Dataset.name.in_(names))
    )
    return {name: report or {} for name, report in rows}


def _count(reports: Reports, ref: DataRef, key: str) -> int | None:
    split = (reports.get(ref.dataset, {}).get("splits") or {}).get(ref.split)
    value = split.get(key) if isinstance(split, dict) else None
    return int(value) if isinstance(value, int) else None


def _step(stage: str, images: int | None, batch: int, epochs: float | None, steps: int | None) -> PlanStep:
    if epochs is not None:
        steps = gkd_catalog.steps_for_epochs(epochs, images, batch) if images else None
    return PlanStep(stage=stage, images=images, batch_size=batch, epochs=epochs, steps=steps)


def job_plan(*, session: Session, team_id: str, spec: JobSpec) -> list[PlanStep]:
    """Every training stage the job runs, in order."""
    info = gkd_catalog.method(spec.method)
    reports = _reports(session, team_id, spec)
    plan: list[PlanStep] = []
    s1 = spec.stage1
    if info.two_stage and spec.proxy is not None:
        one_a = s1.step_1a()
        assert one_a.batch_size is not None
        plan.append(
            _step("stage1a", _count(reports, spec.proxy, "images"), one_a.batch_size, one_a.epochs, one_a.steps)
        )
    if info.two_stage and info.proxy != "only":
        counts = [_count(reports, ref, "images") for ref in [spec.source, *s1.extra_images]]
        images = None if None in counts else sum(c for c in counts if c is not None)
        plan.append(_step("stage1b", images, s1.batch_size, s1.epochs, s1.steps))
    pairs = _count(reports, spec.source, "pairs")
    s2 = spec.stage2
    if info.teacher == "logits" or "teacher" in spec.references:
        plan.append(_step("ref_teacher", pairs, s2.batch_size, s2.epochs, s2.steps))
    plan.append(_step("stage2", pairs, s2.batch_size, s2.epochs, s2.steps))
    plan += [_step(f"ref_{r}", pairs, s2.batch_size, s2.epochs, s2.steps) for r in spec.references if r != "teacher"]
    return plan


def plan_json(*, session: Session, team_id: str, spec: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The plan of a stored spec as JSON rows; None for a spec this version cannot read (one written by
    another release of the API): the job is still shown, without its plan."""
    try:
        parsed = JobSpec.model_validate(spec)
    except ValidationError as exc:
        _logger.warning("a stored job spec does not validate here, so its plan is left out: %s", exc.errors()[:3])
        return None
    return [step.model_dump() for step in job_plan(session=session, team_id=team_id, spec=parsed)]
