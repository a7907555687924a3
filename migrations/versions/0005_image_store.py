"""Images live in the image store (server/store/), not in the database.

Adds ``blobs`` (one row per stored file: dataset, path, sha256, bytes, pixel size) and
``images.blob_id``; moves every ``images.png`` into the store's ``uploads`` dataset
(content-addressed, so a PNG registered in several runs is written once) and drops the column.
The store is the one the server's settings name (``ADAMCU_STORE_ROOT`` or the S3 bucket), or
``config.attributes["store"]``. Downgrade copies the files back into ``images.png``; the files
stay in the store.

Revision ID: 0005
Revises: 0004
"""

import hashlib
import tempfile
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

from server.store import UPLOADS, make_store, upload_path

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
BATCH = 50  # images read into memory at once


def _store():
    store = context.config.attributes.get("store")
    if store is None:
        from server.settings import Settings

        store = make_store(Settings())
    return store


def _write(store, path: str, png: bytes) -> None:
    if store.exists(UPLOADS, path):
        return
    with tempfile.NamedTemporaryFile(dir=store.scratch(), delete=False) as tmp:
        tmp.write(png)
    store.put_file(UPLOADS, path, Path(tmp.name))


def _blob_id(conn, store, row, known: dict[str, int]) -> int:
    sha = hashlib.sha256(row.png).hexdigest()
    if sha not in known:
        path = upload_path(sha)
        _write(store, path, row.png)
        known[sha] = conn.execute(
            sa.text(
                "INSERT INTO blobs (dataset, path, sha256, bytes, width, height, created_at) "
                "VALUES (:d, :p, :s, :b, :w, :h, CURRENT_TIMESTAMP) RETURNING id"
            ),
            {"d": UPLOADS, "p": path, "s": sha, "b": len(row.png), "w": row.width, "h": row.height},
        ).scalar_one()
    return known[sha]


def _move_pngs_to_store() -> None:
    conn, store, known, last = op.get_bind(), None, {}, 0
    query = sa.text(
        "SELECT id, width, height, png FROM images WHERE id > :last ORDER BY id LIMIT :n"
    )
    while rows := conn.execute(query, {"last": last, "n": BATCH}).all():
        store = store or _store()
        for row in rows:
            conn.execute(
                sa.text("UPDATE images SET blob_id = :b WHERE id = :i"),
                {"b": _blob_id(conn, store, row, known), "i": row.id},
            )
        last = rows[-1].id


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=100), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset", "path", name="uq_blobs_dataset_path"),
    )
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("blob_id", sa.Integer(), nullable=True))
    _move_pngs_to_store()
    with op.batch_alter_table("images") as batch:
        batch.drop_column("png")
        batch.alter_column("blob_id", existing_type=sa.Integer(), nullable=False)
        batch.create_foreign_key("fk_images_blob_id", "blobs", ["blob_id"], ["id"])
        batch.create_index("ix_images_blob_id", ["blob_id"], unique=False)


def _copy_back() -> None:
    conn, store, last = op.get_bind(), None, 0
    query = sa.text(
        "SELECT images.id, blobs.dataset, blobs.path FROM images JOIN blobs "
        "ON blobs.id = images.blob_id WHERE images.id > :last ORDER BY images.id LIMIT :n"
    )
    while rows := conn.execute(query, {"last": last, "n": BATCH}).all():
        store = store or _store()
        for row in rows:
            with store.open(row.dataset, row.path) as f:
                png = f.read()
            conn.execute(
                sa.text("UPDATE images SET png = :p WHERE id = :i"), {"p": png, "i": row.id}
            )
        last = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("png", sa.LargeBinary(), nullable=True))
    _copy_back()
    with op.batch_alter_table("images") as batch:
        batch.drop_index("ix_images_blob_id")
        batch.drop_constraint("fk_images_blob_id", type_="foreignkey")
        batch.drop_column("blob_id")
        batch.alter_column("png", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table("blobs")
