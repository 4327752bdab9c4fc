"""Task names and queues: the API's only link to Celery (it enqueues by name, never imports tasks)."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    """Queues workers listen on; one per GPU kind."""

    GPU = "gpu"


RUN_JOB_TASK = "gkd.run_job"
RUN_EVALUATION_TASK = "gkd.run_evaluation"
