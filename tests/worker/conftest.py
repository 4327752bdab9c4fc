"""Worker test fixtures: the tiny benchmark (written once per session)."""

from __future__ import annotations

from tests.support.worker_env import tiny_bench  # noqa: F401
