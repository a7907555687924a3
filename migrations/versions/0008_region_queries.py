"""Region queries and a budget in seconds (issue 24).

Adds ``queries.region`` (nullable JSON: a region query's box and runs, ``server.schemas.Region``;
NULL is a pixel query, as every existing query stays), ``queries.pixels`` (what the query costs
the pixel budget: 1 for a pixel query, the region's pixel count; existing rows get 1, which is
what they cost) and ``runs.budget_seconds`` (the annotators' seconds a run may spend; NULL, as
on every existing run: no limit). Downgrading drops the three columns; it refuses (and changes
nothing) while any region query is stored: an older server would label one pixel of each and
count its budget in queries, so the regions' answers would be lost.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.add_column(sa.Column("region", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("pixels", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("budget_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    regions = op.get_bind().execute(
        sa.text("SELECT count(*) FROM queries WHERE region IS NOT NULL")
    ).scalar_one()
    if regions:
        raise RuntimeError(
            f"{regions} region queries are stored; revision 0007 cannot hold them (their "
            "answers would label one pixel each). Export the run (masks.zip) or delete the "
            "runs that hold them before downgrading below 0008."
        )
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("budget_seconds")
    with op.batch_alter_table("queries") as batch:
        batch.drop_column("pixels")
        batch.drop_column("region")
