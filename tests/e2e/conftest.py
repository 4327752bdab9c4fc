"""End-to-end fixtures: the tiny benchmark and worker processes that are stopped after each test."""

from __future__ import annotations

from tests.support.worker_env import tiny_bench, worker_processes  # noqa: F401
