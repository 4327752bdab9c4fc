"""Deleted jobs give their Idempotency-Key back (jobs deleted before this release still held theirs, so the
same spec file replayed a job that reads as 404).

Revision ID: b2d4f6a8c0e1
Revises: a1c3e5f7b9d2
Create Date: 2026-12-01 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b2d4f6a8c0e1"
down_revision = "a1c3e5f7b9d2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("UPDATE jobs SET idempotency_key = NULL WHERE deleted_at IS NOT NULL"))


def downgrade() -> None:
    """The keys are gone; nothing to put back."""
