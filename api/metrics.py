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

    def exposition(self) -> bytes:
        """The text a scrape returns: every API process's values where there are several, else this one's."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)
        return generate_latest(merged)
