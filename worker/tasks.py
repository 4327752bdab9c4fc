"""Celery tasks: thin shims that take ids and call the pipeline (the database holds the state).

Each passes the worker's node name (``celery@host``, or the ``-n`` name) so that events tell two
workers on one host apart.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from service.queue import RUN_EVALUATION_TASK, RUN_JOB_TASK


@shared_task(name=RUN_JOB_TASK, ignore_result=True, bind=True)
def run_job(self: Any, job_id: str) -> None:
    """Run or resume one job."""
    from worker import pipeline

    pipeline.run_job(job_id, worker=self.request.hostname)


@shared_task(name=RUN_EVALUATION_TASK, ignore_result=True, bind=True)
def run_evaluation(self: Any, evaluation_id: str) -> None:
    """Evaluate a finished job's student on more target domains."""
    from worker import evaluation

    evaluation.run_evaluation(evaluation_id, worker=self.request.hostname)
