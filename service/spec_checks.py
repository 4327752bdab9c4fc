"""Checks on a JobSpec that need the database or the model list; all problems are reported at once.

The shape of the spec (types, bounds, unknown fields) is checked by pydantic in service/schemas.py.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import gkd_catalog
from service import capacity, zoo
from service.auth import team_name
from service.datasets import UriRejected, find_dataset, resolve_dataset_uri
from service.errors import ValidationFailed, field_error
from service.models import Artifact, DatasetStatus, Job, JobStatus
from service.notify.spec_check import notify_problems
from service.schemas import DataRef, JobSpec, ModelRef
from service.settings import Settings


def check_job_spec(*, session: Session, team_id: str, spec: JobSpec, settings: Settings) -> None:
    """Raise ValidationFailed listing every problem (field, message, fix); return when the spec is runnable."""
    errors: list[dict[str, Any]] = []
    _check_stage_blocks(spec, errors)
    metas = {role: _check_model(role, getattr(spec, role), errors) for role in ("teacher", "student")}
    teacher, student = metas["teacher"], metas["student"]
    if teacher is not None and student is not None:
        _check_pair(spec, teacher, student, errors)
    if student is not None:
        _check_sizes(spec, student, errors)
    for role in ("teacher", "student"):
        _check_weights(session, team_id, role, getattr(spec, role), settings, errors)
    for field, ref, needs_labels in spec.datasets():
        check_dataset_ref(session=session, team_id=team_id, field=field, ref=ref, needs_labels=needs_labels,
                          errors=errors)
    check_resources(session=session, spec=spec, settings=settings, errors=errors)
    errors += notify_problems(session=session, team_id=team_id, notify=spec.notify, settings=settings)
    if spec.resources.queue not in settings.queues:
        errors.append(
            field_error(
                "resources.queue",
                f"no workers listen on queue {spec.resources.queue!r}",
                f"use one of: {', '.join(settings.queues)}",
            )
        )
    if errors:
        raise ValidationFailed(errors)


def check_dataset_ref(
    *, session: Session, team_id: str, field: str, ref: DataRef, needs_labels: bool, errors: list[dict[str, Any]]
) -> None:
    """Append a problem when ``ref`` is not a registered, valid split of the team (labelled when it must be)."""
    dataset = find_dataset(session=session, team_id=team_id, name=ref.dataset)
    if dataset is None:
        errors.append(
            field_error(
                f"{field}.dataset",
                f"dataset {ref.dataset!r} is not registered",
                "register it first with POST /v1/datasets (gkd data register)",
            )
        )
        return
    if dataset.status == DatasetStatus.VALIDATING.value:
        errors.append(
            field_error(
                f"{field}.dataset",
                f"dataset {ref.dataset!r} is still being validated (since {(dataset.report or {}).get('started_at')})",
                f"submit again once GET /v1/datasets/{ref.dataset} (gkd data show) says valid",
            )
        )
        return
    if dataset.status != DatasetStatus.VALID.value:
        errors.append(
            field_error(
                f"{field}.dataset",
                f"dataset {ref.dataset!r} failed validation",
                "fix the problems in its report and register it again",
                report=dataset.report,
            )
        )
        return
    report = dataset.report or {}
    if needs_labels and report.get("labels") is False:
        errors.append(
            field_error(
                f"{field}.dataset",
                f"dataset {ref.dataset!r} is an images-only set ({dataset.layout}): stage 2, the reference rows "
                "and evaluation need labels",
                "use it as proxy or stage1.extra_images, and register a labelled layout for this role",
            )
        )
    splits = report.get("splits") or {}
    if splits and ref.split not in splits:
        errors.append(
            field_error(
                f"{field}.split",
                f"dataset {ref.dataset!r} has no split {ref.split!r}",
                f"use one of: {', '.join(sorted(splits))}",
            )
        )


def _check_stage_blocks(spec: JobSpec, errors: list[dict[str, Any]]) -> None:
    """A stage block the request gave for a stage its method does not run would be ignored: refuse it.

    Only what the request itself set counts (``model_fields_set``): stored specs carry every block's defaults.
    """
    stages = gkd_catalog.method(spec.method).stages
    for block in ("stage1", "stage2"):
        if block in spec.model_fields_set and block not in stages:
            having = ", ".join(m.name for m in gkd_catalog.METHODS.values() if block in m.stages)
            errors.append(
                field_error(
                    block,
                    f"method {spec.method!r} has no {block}, so the {block} block would be ignored",
                    f"remove {block}, or use a method that has it ({having})",
                )
            )


def _check_model(role: str, ref: ModelRef, errors: list[dict[str, Any]]) -> zoo.ModelMeta | None:
    meta = zoo.lookup(ref.model)
    if meta is None:
        matches = zoo.close_matches(ref.model)
        fix = f"did you mean: {', '.join(matches)}?" if matches else "see GET /v1/models for the curated zoo"
        errors.append(field_error(f"{role}.model", f"unknown {role} model {ref.model!r}", fix, close_matches=matches))
        return None
    if meta.feature_api != "forward_intermediates":
        errors.append(
            field_error(
                f"{role}.model",
                f"{ref.model} has no forward_intermediates feature API",
                "choose a model listed by GET /v1/models",
            )
        )
        return None
    return meta


def _check_pair(spec: JobSpec, teacher: zoo.ModelMeta, student: zoo.ModelMeta, errors: list[dict[str, Any]]) -> None:
    if gkd_catalog.method(spec.method).teacher == "tokens" and teacher.kind != "vit":
        errors.append(
            field_error(
                "teacher.model",
                f"{spec.method} distils a ViT teacher's patch tokens, but {teacher.name} is a {teacher.kind} model "
                f"whose features cannot be matched to {student.name}",
                "use a ViT teacher (e.g. vit_base_patch14_dinov2) or method kd, cwd or feature_mse",
            )
        )


def _check_sizes(spec: JobSpec, student: zoo.ModelMeta, errors: list[dict[str, Any]]) -> None:
    patch = spec.student.overrides.get("patch_size", student.patch_size)
    proxy_step = spec.stage1.proxy_step
    if proxy_step is not None and proxy_step.student_patch_size is not None and student.kind != "vit":
        errors.append(
            field_error(
                "stage1.proxy_step.student_patch_size",
                f"{student.name} is a {student.kind} model: only a ViT student's patch kernel can be resized",
                "remove student_patch_size, or use a ViT student",
            )
        )
    if student.kind != "vit" or not isinstance(patch, int) or patch <= 0:
        return
    sizes = [("stage1.image_size", spec.stage1.image_size, patch), ("stage2.crop_size", spec.stage2.crop_size, patch)]
    if spec.proxy is not None:
        step_1a = spec.stage1.step_1a()
        assert step_1a.image_size is not None
        sizes.append(("stage1.proxy_step.image_size", step_1a.image_size, step_1a.student_patch_size or patch))
    for field, size, step_patch in sizes:
        if size % step_patch:
            lower = max(step_patch, size - size % step_patch)
            errors.append(
                field_error(
                    field,
                    f"{size} is not a multiple of the student's patch size {step_patch} in that step",
                    f"use {lower} or {lower + step_patch}",
                )
            )


def _check_weights(
    session: Session, team_id: str, role: str, ref: ModelRef, settings: Settings, errors: list[dict[str, Any]]
) -> None:
    field = f"{role}.weights"
    if ref.weights.startswith("file://"):
        try:
            resolve_dataset_uri(ref.weights, settings, team=team_name(session=session, team_id=team_id))
        except UriRejected as exc:
            errors.append(field_error(field, str(exc), "put the weights under an allowed root or use s3://"))
    elif ref.weights.startswith("artifact://"):
        job_id, _, name = ref.weights.removeprefix("artifact://").partition("/")
        job = session.scalar(
            select(Job).where(Job.id == job_id, Job.team_id == team_id, Job.deleted_at.is_(None))
        )
        if job is None:
            errors.append(field_error(field, f"no job {job_id} for this team", "name one of your own jobs"))
        elif job.status != JobStatus.SUCCEEDED.value:
            errors.append(
                field_error(
                    field, f"job {job_id} is {job.status}, not succeeded", "wait for it to succeed or pick another job"
                )
            )
        else:
            names = sorted(a.name for a in session.scalars(select(Artifact).where(Artifact.job_id == job_id)))
            if name not in names:
                errors.append(
                    field_error(
                        field,
                        f"job {job_id} has no artifact {name!r}",
                        f"use one it has: {', '.join(names) or 'none'} (student.safetensors is the distilled student)",
                    )
                )


def check_resources(*, session: Session, spec: JobSpec, settings: Settings, errors: list[dict[str, Any]]) -> None:
    """``resources.gpus`` ranks: every global batch the job trains with splits evenly over them, and a live
    worker of the queue can hold them (a queue with no live worker takes the job; it waits for one)."""
    ranks = spec.resources.gpus
    batches = [("stage2.batch_size", spec.stage2.batch_size)]
    if gkd_catalog.method(spec.method).two_stage:
        batches.append(("stage1.batch_size", spec.stage1.batch_size))
        if spec.proxy is not None:
            batches.append(("stage1.proxy_step.batch_size", spec.stage1.step_1a().batch_size or 0))
    for field, batch in batches:
        if batch % ranks:
            lower = max(ranks, batch - batch % ranks)
            errors.append(
                field_error(
                    field,
                    f"the global batch of {batch} does not split evenly over resources.gpus={ranks} ranks "
                    f"(each rank takes batch_size / {ranks})",
                    f"use {lower} or {lower + ranks}, or change resources.gpus",
                )
            )
    if settings.team_max_gpus is not None and ranks > settings.team_max_gpus:
        limit = settings.team_max_gpus
        over = f"resources.gpus={ranks} is more than a team may hold at once (GKD_TEAM_MAX_GPUS={limit})"
        errors.append(field_error("resources.gpus", over, f"ask for resources.gpus <= {limit}"))
    queue, stale_s = spec.resources.queue, settings.capacity_stale_s
    problem = capacity.too_big(session=session, queue=queue, ranks=ranks, stale_s=stale_s)
    if problem is not None:
        fix = "ask for fewer GPUs, or submit to a queue whose workers hold more"
        errors.append(field_error("resources.gpus", problem, fix))
