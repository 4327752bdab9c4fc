"""Datasets keep the layout options they are read with (datasets.options).

Revision ID: a8b1d5e6f7c9
Revises: f6a0c4d5e7b8
Create Date: 2026-12-01 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a8b1d5e6f7c9"
down_revision = "f6a0c4d5e7b8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows registered before options existed were read with every option at its default: {}.
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("options", sa.JSON(), server_default="{}", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("options")
