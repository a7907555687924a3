"""64-bit pixel counts on runs: a full-size Cityscapes train set has 6.2e9 pixels.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ("target_pixels", "budget_total", "reserved", "answered")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in COLUMNS:
            batch.alter_column(name, existing_type=sa.Integer(), type_=sa.BigInteger(),
                               existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in COLUMNS:
            batch.alter_column(name, existing_type=sa.BigInteger(), type_=sa.Integer(),
                               existing_nullable=False)
