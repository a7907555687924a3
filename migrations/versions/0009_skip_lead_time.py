"""The seconds an annotator spent on a skip (issue 24).

Adds ``queries.skip_lead_time_ms`` (nullable integer: the ``lead_time_ms`` a skip was sent
with, in milliseconds; NULL, as on every existing query: no time recorded, counting 0 in
``/budget``'s ``skipped_seconds``). Downgrading drops the column: the skips stay skipped and
only their recorded seconds are lost (revision 0008 counted a skip as 0 s), so it never refuses.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.add_column(sa.Column("skip_lead_time_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.drop_column("skip_lead_time_ms")
