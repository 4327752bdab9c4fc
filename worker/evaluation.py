"""Follow-up evaluations: a finished job's exported student, scored on more target domains."""

from __future__ import annotations

import logging

from gkd_core.experiment import evaluate_student
from service import evaluations, jobs
from service.models import EvaluationStatus
from service.schemas import TargetRef
from worker.context import WorkerContext, get_context
from worker.pipeline import USER_ERRORS, device, resolve_split

_logger = logging.getLogger(__name__)
STUDENT_ARTIFACT = "student.safetensors"


def run_evaluation(evaluation_id: str, *, context: WorkerContext | None = None) -> None:
    """Claim the evaluation (a redelivered message does nothing), score every target, store the results."""
    context = context or get_context()
    with context.session() as session:
        evaluation = evaluations.claim_evaluation(session=session, evaluation_id=evaluation_id)
        if evaluation is None:
            return
        job_id, team_id, targets = evaluation.job_id, evaluation.team_id, list(evaluation.targets)
        artifact = jobs.get_artifact(session=session, job_id=job_id, name=STUDENT_ARTIFACT)
        key = artifact.storage_key
    try:
        resolver = context.resolver(team_id=team_id)
        refs = [
            resolve_split(context, resolver, team_id, TargetRef.model_validate(raw)) for raw in targets
        ]
        local = context.scratch / f"eval-{evaluation_id}" / STUDENT_ARTIFACT
        context.store.get_file(key, local)
        metrics = evaluate_student(local, refs, device=device())
        results = {domain: m.to_dict() for domain, m in metrics.items()}
    except USER_ERRORS as exc:
        with context.session() as session:
            evaluations.finish_evaluation(
                session=session, evaluation_id=evaluation_id, status=EvaluationStatus.FAILED,
                error=f"{type(exc).__name__}: {exc}",
            )
        return
    with context.session() as session:
        evaluations.finish_evaluation(
            session=session, evaluation_id=evaluation_id, status=EvaluationStatus.SUCCEEDED, results=results
        )
    _logger.info("evaluation %s done: %s", evaluation_id, {d: r.get("miou") for d, r in results.items()})
