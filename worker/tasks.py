"""Celery tasks: thin shims that take ids and call the pipeline (the database holds the state)."""

from __future__ import annotations

from celery import shared_task

from service.queue import RUN_EVALUATION_TASK, RUN_JOB_TASK


@shared_task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(job_id: str) -> None:
    """Run or resume one job."""
    from worker import pipeline

    pipeline.run_job(job_id)


@shared_task(name=RUN_EVALUATION_TASK, ignore_result=True)
def run_evaluation(evaluation_id: str) -> None:
    """Evaluate a finished job's student on more target domains."""
    from worker import evaluation

    evaluation.run_evaluation(evaluation_id)
