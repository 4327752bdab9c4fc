"""Workers advertise how many ranks one job may run on them, per queue (worker_slots).

Revision ID: c7d2e9f1a3b4
Revises: b3f1c2d4e5a6
Create Date: 2026-12-01 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c7d2e9f1a3b4"
down_revision = "b3f1c2d4e5a6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_slots",
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=8), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker", "queue", name=op.f("pk_worker_slots")),
    )


def downgrade() -> None:
    op.drop_table("worker_slots")
