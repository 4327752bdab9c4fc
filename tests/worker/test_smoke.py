"""The Celery app loads the shared task policy from Settings."""

from __future__ import annotations

from service.settings import Settings
from worker.celery_app import create_celery


def test_celery_policy(tmp_path) -> None:
    app = create_celery(Settings(data_dir=tmp_path))
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_default_queue == "gpu"
    assert str(tmp_path) in app.conf.broker_url


def test_the_embedded_broker_polls_fast_enough_to_start_a_job_at_once(tmp_path) -> None:
    from kombu.transport import sqlalchemy as sqla_transport

    from worker.celery_app import SQLA_POLLING_INTERVAL_S

    sqla_transport.Transport.polling_interval = 1.0  # kombu's default
    create_celery(Settings(data_dir=tmp_path))  # embedded: an SQLite broker
    assert sqla_transport.Transport.polling_interval == SQLA_POLLING_INTERVAL_S <= 0.1
