"""Fixtures for service tests: a rolled-back session on each backend, and factories."""

from __future__ import annotations

from tests.service._db import database_url, engine, postgres_url, session  # noqa: F401
from tests.service._s3 import s3_bucket  # noqa: F401
