"""dispatch outbox: when a job or upload was last handed to a worker

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 13:10:00

A row that is queued (job) or pending (upload) but was never dispatched, or was dispatched
long ago, is what the sweeper sends (again).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("jobs", "models", "datasets")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("dispatched_at")
