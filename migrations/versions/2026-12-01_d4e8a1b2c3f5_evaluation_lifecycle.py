"""Evaluations share the jobs' lifecycle: queue, attempts, heartbeat, cancel flag, failure reason.

Revision ID: d4e8a1b2c3f5
Revises: e5f9b3c4d6a7
Create Date: 2026-12-01 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "d4e8a1b2c3f5"
down_revision = "e5f9b3c4d6a7"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("queue", sa.String(length=64), server_default="gpu", nullable=False))
        batch.add_column(sa.Column("max_attempts", sa.Integer(), server_default="3", nullable=False))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("error_reason", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        for column in ("updated_at", "error_reason", "cancel_requested", "heartbeat_at", "max_attempts", "queue"):
            batch.drop_column(column)
