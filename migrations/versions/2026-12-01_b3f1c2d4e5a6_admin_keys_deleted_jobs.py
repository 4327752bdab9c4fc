"""API keys gain an admin flag (admin keys list and revoke every team's keys); jobs gain deleted_at.

Revision ID: b3f1c2d4e5a6
Revises: a61c5d246ab2
Create Date: 2026-12-01 03:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b3f1c2d4e5a6"
down_revision = "a61c5d246ab2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("admin", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("deleted_at")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("admin")
