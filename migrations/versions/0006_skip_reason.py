"""Why a query was skipped (issue 25): ``queries.skip_reason``.

An annotator may skip with a reason; ``cant_tell`` says they looked and could not tell the
class, which the budget and the stats count apart from other skips. NULL: no reason given
(every skip before this revision, and the queries a finished run released). Downgrading drops
the column: a can't-tell skip becomes a plain skip, as an older server knows it.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.add_column(sa.Column("skip_reason", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.drop_column("skip_reason")
