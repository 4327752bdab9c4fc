"""The Celery app, configured once from Settings with the policy every GKD task shares."""

from __future__ import annotations

from celery import Celery

from service.queue import Queue
from service.settings import Settings, get_settings


def create_celery(settings: Settings | None = None) -> Celery:
    """Build a Celery app: late acks, one message at a time, JSON only, one queue per GPU kind."""
    settings = settings or get_settings()
    app = Celery("gkd", broker=settings.resolved_broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=Queue.GPU.value,
        broker_connection_retry_on_startup=True,
        # Longer than any stage: a job that runs for hours must not be redelivered while alive.
        broker_transport_options={"visibility_timeout": 48 * 3600}
        if settings.resolved_broker_url.startswith("redis")
        else {},
    )
    return app
