"""End-to-end fixtures: the tiny benchmark, worker processes stopped after each test, a throwaway
PostgreSQL database (from the service tests), and SeaweedFS (``seaweed_s3``, from tests/conftest.py)."""

from __future__ import annotations

from tests.service._db import postgres_url  # noqa: F401
from tests.support.worker_env import tiny_bench, worker_processes  # noqa: F401
