"""Task names, queues, the shared Celery policy, and enqueue_*: the API's only link to Celery.

The API enqueues by task *name* through a small sending app built from ``celery_config``; it never
imports worker/. worker/celery_app.py builds its app from the same ``celery_config``.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from service.settings import Settings, get_settings

if TYPE_CHECKING:
    from celery import Celery

_logger = logging.getLogger(__name__)


class Queue(StrEnum):
    """Queues workers listen on; one per GPU kind."""

    GPU = "gpu"


RUN_JOB_TASK = "gkd.run_job"
RUN_EVALUATION_TASK = "gkd.run_evaluation"


def celery_config(settings: Settings) -> dict[str, Any]:
    """The policy every GKD task shares: late acks, one message at a time, JSON only, explicit queue."""
    broker = settings.resolved_broker_url
    return {
        "broker_url": broker,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_default_queue": Queue.GPU.value,
        "broker_connection_retry_on_startup": True,
        # Longer than any stage: a job that runs for hours must not be redelivered while alive.
        "broker_transport_options": {"visibility_timeout": 48 * 3600} if broker.startswith("redis") else {},
    }


def make_sender(settings: Settings) -> Celery:
    """A Celery app that only sends tasks (no task modules imported)."""
    from celery import Celery

    app = Celery("gkd-sender")
    app.conf.update(celery_config(settings))
    return app


_senders: dict[str, Celery] = {}


def _sender(settings: Settings) -> Celery:
    """One sending app per broker URL (Settings objects are not hashable, their broker URL is)."""
    broker = settings.resolved_broker_url
    if broker not in _senders:
        _senders[broker] = make_sender(settings)
    return _senders[broker]


class Enqueuer(Protocol):
    """What the API needs to hand work to the workers (tests inject a recording fake)."""

    def enqueue_job(self, job_id: str, queue: str = ...) -> None: ...

    def enqueue_evaluation(self, evaluation_id: str, queue: str = ...) -> None: ...


class CeleryEnqueuer:
    """Sends tasks by name through the configured broker."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()

    def enqueue_job(self, job_id: str, queue: str = Queue.GPU.value) -> None:
        enqueue_job(job_id, queue=queue, settings=self.settings)

    def enqueue_evaluation(self, evaluation_id: str, queue: str = Queue.GPU.value) -> None:
        enqueue_evaluation(evaluation_id, queue=queue, settings=self.settings)


def enqueue_job(
    job_id: str, *, queue: str = Queue.GPU.value, settings: Settings | None = None, countdown: float | None = None
) -> None:
    """Send ``gkd.run_job(job_id)``; call only after the job row is committed (``countdown``: retry delay)."""
    _sender(settings or get_settings()).send_task(RUN_JOB_TASK, args=[job_id], queue=queue, countdown=countdown)
    _logger.info("enqueued job %s on %s", job_id, queue)


def enqueue_evaluation(
    evaluation_id: str,
    *,
    queue: str = Queue.GPU.value,
    settings: Settings | None = None,
    countdown: float | None = None,
) -> None:
    """Send ``gkd.run_evaluation(evaluation_id)``; call only after the row is committed (``countdown``: retry delay)."""
    _sender(settings or get_settings()).send_task(
        RUN_EVALUATION_TASK, args=[evaluation_id], queue=queue, countdown=countdown
    )
    _logger.info("enqueued evaluation %s on %s", evaluation_id, queue)
