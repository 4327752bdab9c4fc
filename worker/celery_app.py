"""The Celery app, configured once from Settings with the policy every GKD task shares.

``celery -A worker.celery_app:app worker`` runs a worker; each worker process also runs the
sweeper thread that recovers jobs of lost workers and the thread that sends job notifications
(service/notify/deliverer.py), and advertises how many ranks one job may run
on it for every queue it consumes (worker/capacity.py).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown, worker_shutting_down

from service.queue import celery_config
from service.settings import Settings, get_settings

_logger = logging.getLogger(__name__)
SQLA_POLLING_INTERVAL_S = 0.05  # embedded broker: a job starts within a second (default polling is 1 s)


def create_celery(settings: Settings | None = None) -> Celery:
    """Build a Celery app: late acks, one message at a time, JSON only, one queue per GPU kind."""
    settings = settings or get_settings()
    app = Celery("gkd")
    app.conf.update(celery_config(settings))
    app.conf.update(include=["worker.tasks"], worker_hijack_root_logger=False)
    if settings.resolved_broker_url.startswith("sqla+"):
        # Set on the transport class: broker_transport_options would be passed to create_engine.
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = SQLA_POLLING_INTERVAL_S
    return app


app = create_celery()
_sweeper: Any = None
_advertiser: Any = None
_deliverer: Any = None


@worker_init.connect
def _preload_pipeline(**_: Any) -> None:
    """Import torch, timm and gkd_core once in the parent, before the pool forks.

    Pool processes inherit the loaded modules, so the first job is claimed as soon as its message
    arrives instead of after seconds of imports inside the task (the tasks import lazily so that
    sending a task never needs torch).
    """
    import worker.evaluation
    import worker.pipeline  # noqa: F401
    from worker import shutdown

    shutdown.clear_marker()


@worker_process_init.connect
def _fresh_context(**_: Any) -> None:
    """Forked pool processes must not share the parent's database connections.

    Each pool process also dies if the main worker process dies.
    """
    import signal

    from worker import shutdown
    from worker.context import set_context

    set_context(None)
    shutdown.die_with_parent(signal.SIGKILL)


@worker_ready.connect
def _start_sweeper(sender: Any = None, **_: Any) -> None:
    global _sweeper, _advertiser, _deliverer
    from service.notify.deliverer import Deliverer
    from worker.capacity import Advertiser
    from worker.context import get_context
    from worker.sweeper import Sweeper

    settings = get_settings()
    _sweeper = Sweeper(get_context(), interval_s=max(1.0, settings.heartbeat_stale_s / 4)).start()
    _logger.info("sweeper started")
    _deliverer = Deliverer(get_context().session, settings).start()
    consumer = sender  # worker_ready is sent by the consumer: its node name and the queues it reads
    queues = sorted(consumer.app.amqp.queues.consume_from) if consumer is not None else list(settings.queues)
    _advertiser = Advertiser(get_context(), getattr(consumer, "hostname", None) or get_context().hostname, queues)
    _advertiser.start()


@worker_shutting_down.connect
def _hand_back_running_jobs(**_: Any) -> None:
    """Warm shutdown: running jobs checkpoint and go back to the queue instead of finishing here."""
    from worker import shutdown

    shutdown.notify_children()


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    from worker import shutdown

    if _sweeper is not None:
        _sweeper.stop()
    if _advertiser is not None:
        _advertiser.stop()
    if _deliverer is not None:
        _deliverer.stop()
    shutdown.clear_marker()
