"""Tokens may expire and be revoked; finished runs hold no reservation.

Adds ``tokens.expires_at`` and ``tokens.revoked_at`` (both nullable: existing tokens stay
valid and unexpiring). A run finished before finishing released its queries may still hold
pending or leased ones: they become ``skipped`` and its ``reserved`` counter drops to 0, as
finishing a run does from now on.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.DateTime(), nullable=True))
    finished = sa.text("SELECT id FROM runs WHERE status = 'finished'")
    op.execute(
        sa.text(
            "UPDATE queries SET status = 'skipped', lease_expires_at = NULL "
            f"WHERE status IN ('pending', 'leased') AND run_id IN ({finished.text})"
        )
    )
    op.execute(sa.text("UPDATE runs SET reserved = 0 WHERE status = 'finished'"))


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("expires_at")
