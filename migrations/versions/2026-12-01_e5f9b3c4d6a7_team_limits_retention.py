"""Jobs gain waiting_reason (a team limit holds them in queued) and checkpoints_deleted_at (retention).

Revision ID: e5f9b3c4d6a7
Revises: a8b1d5e6f7c9
Create Date: 2026-12-01 05:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e5f9b3c4d6a7"
down_revision = "a8b1d5e6f7c9"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("waiting_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("checkpoints_deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("checkpoints_deleted_at")
        batch.drop_column("waiting_reason")
