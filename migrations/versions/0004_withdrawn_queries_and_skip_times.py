"""Withdrawn queries and skip times (the session mode, issue 11).

A query may now have the status ``withdrawn`` (the trainer took a pending query back; its
reservation was released). ``queries.status`` is a plain string column, so the new status
needs no schema change. ``queries.skipped_at`` records when an annotator skipped a query, so
the server's pace counts skips as work (a finished run's released queries have none); rows
skipped before this revision keep NULL and count in no rate. Downgrading turns withdrawn
queries into skipped ones (what an older server knows: not reserved, never answered).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.add_column(sa.Column("skipped_at", sa.DateTime(), nullable=True))
    op.create_index("ix_queries_run_skipped", "queries", ["run_id", "skipped_at"])


def downgrade() -> None:
    op.execute(sa.text("UPDATE queries SET status = 'skipped' WHERE status = 'withdrawn'"))
    op.drop_index("ix_queries_run_skipped", table_name="queries")
    with op.batch_alter_table("queries") as batch:
        batch.drop_column("skipped_at")
