"""Metric rows read in the order they were written, one job at a time (the ``after`` cursor of /metrics).

Revision ID: a1c3e5f7b9d2
Revises: d4e8a1b2c3f5
Create Date: 2026-12-01 18:10:00
"""

from __future__ import annotations

from alembic import op

revision = "a1c3e5f7b9d2"
down_revision = "d4e8a1b2c3f5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_metric_points_job_id_id", "metric_points", ["job_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_metric_points_job_id_id", table_name="metric_points")
