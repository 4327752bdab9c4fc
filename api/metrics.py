"""Prometheus metrics on a per-app registry (tests build many apps; a global registry would collide).

With several API processes (``python -m api``, GKD_API_WORKERS > 1) each process counts only the
requests it served, and a scrape reaches one of them at random. prometheus_client's multiprocess mode
fixes that: when ``PROMETHEUS_MULTIPROC_DIR`` is set before the library is imported (``python -m api``
sets it for its workers), every process writes its values to files there and a scrape sums them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from service.ops_gauges import OpsGauges

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared metrics folder of a multi-process API, or None in a single process."""
    return os.environ.get(MULTIPROC_ENV) or None


@dataclass
class ApiMetrics:
    """The API's collectors, all registered on ``registry``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "gkd_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gkd_http_request_duration_seconds",
            "Request latency by route template",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.jobs = Gauge(
            "gkd_jobs",
            "Jobs by state (all teams), read from the database at scrape time",
            ["state"],
            registry=self.registry,
            multiprocess_mode="mostrecent",  # set at scrape time by whichever process answers
        )

        def scraped(name: str, text: str, labels: list[str]) -> Gauge:
            return Gauge(name, text, labels, registry=self.registry, multiprocess_mode="mostrecent")

        self.queued = scraped("gkd_queued_jobs", "Jobs waiting in each queue", ["queue"])
        self.oldest_queued = scraped(
            "gkd_oldest_queued_job_seconds", "How long the oldest job of each queue has waited", ["queue"]
        )
        self.live_workers = scraped("gkd_live_workers", "Workers that advertised slots recently, per queue", ["queue"])
        self.worker_slots = scraped("gkd_worker_slots", "Ranks (GPUs or CPU ranks) live workers offer", ["queue"])
        self.evaluations = scraped("gkd_evaluations", "Evaluations by state (all teams)", ["state"])
        self.datasets_validating = scraped("gkd_datasets_validating", "Registered datasets still being validated", [])
        self.notifications_pending = scraped("gkd_notifications_pending", "Notifications not yet delivered", [])

    def set_ops(self, gauges: OpsGauges) -> None:
        """Copy one scrape's database figures into the gauges."""
        pairs: list[tuple[Gauge, str, dict[str, int] | dict[str, float]]] = [
            (self.jobs, "state", gauges.jobs_by_state),
            (self.queued, "queue", gauges.queued_by_queue),
            (self.oldest_queued, "queue", gauges.oldest_queued_s),
            (self.live_workers, "queue", gauges.live_workers),
            (self.worker_slots, "queue", gauges.worker_slots),
            (self.evaluations, "state", gauges.evaluations_by_state),
        ]
        for gauge, label, values in pairs:
            for key, value in values.items():
                gauge.labels(**{label: key}).set(value)
        self.datasets_validating.set(gauges.datasets_validating)
        self.notifications_pending.set(gauges.notifications_pending)

    def exposition(self) -> bytes:
        """The text a scrape returns: every API process's values where there are several, else this one's."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        return generate_latest(merged)
