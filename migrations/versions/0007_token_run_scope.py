"""Tokens may be scoped to runs.

Adds ``tokens.run_ids`` (nullable JSON list of run ids): ``NULL`` is a token of every run, as
every existing token stays; a list limits a trainer's, annotator's or viewer's token to those
runs (any other run is 404 to it).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("run_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("run_ids")
