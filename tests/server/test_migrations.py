"""An empty database upgraded to head matches the models exactly (no autogenerate diff)."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from PIL import Image as PILImage
from sqlalchemy import create_engine, inspect, text

from server.migrate import downgrade, upgrade
from server.models import Base
from server.store import FolderStore


def _diff(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def test_postgres_empty_schema_upgrades_without_diff(pg_url):
    upgrade(pg_url)
    assert _diff(pg_url) == []


def test_sqlite_empty_file_upgrades_without_diff(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert _diff(url) == []


def test_downgrade_to_base_drops_everything(pg_url):
    upgrade(pg_url)
    downgrade(pg_url)
    engine = create_engine(pg_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(pg_url)
    assert _diff(pg_url) == []


def _seed_0003(url: str, pngs: list[bytes]) -> None:
    """A database at 0003 with one run whose images hold their PNG bytes."""
    upgrade(url, "0003")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, name, classes, target_pixels, budget_rate, strategy, "
                "config, status, budget_total, reserved, answered, consumed_cursor, created_at) "
                "VALUES (1, 'r', '[]', 10, 0.1, 'full', '{}', 'active', 1, 0, 0, 0, "
                "CURRENT_TIMESTAMP)"
            )
        )
        for i, png in enumerate(pngs, start=1):
            conn.execute(
                text(
                    "INSERT INTO images (id, run_id, key, width, height, png) "
                    "VALUES (:i, 1, :k, 4, 2, :p)"
                ),
                {"i": i, "k": f"k{i}", "p": png},
            )
    engine.dispose()


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    arr = np.random.default_rng(seed).integers(0, 255, (2, 4, 3), dtype=np.uint8)
    PILImage.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_0004_moves_image_bytes_into_the_store_and_back(backend, tmp_path, request):
    url = (
        f"sqlite:///{tmp_path / 'm.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    pngs = [_png(0), _png(1), _png(0)]  # the third repeats the first: stored once
    _seed_0003(url, pngs)
    store = FolderStore(tmp_path / "store")
    upgrade(url, store=store)
    assert _diff(url) == []
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT images.id, blobs.dataset, blobs.path, blobs.sha256, blobs.bytes FROM "
                "images JOIN blobs ON blobs.id = images.blob_id ORDER BY images.id"
            )
        ).all()
        assert conn.execute(text("SELECT count(*) FROM blobs")).scalar_one() == 2
    assert [r.sha256 for r in rows] == [hashlib.sha256(p).hexdigest() for p in pngs]
    for row, png in zip(rows, pngs, strict=True):
        assert row.dataset == "uploads" and row.bytes == len(png)
        assert (tmp_path / "store" / "uploads" / row.path).read_bytes() == png
    downgrade(url, "0003", store=store)
    with engine.connect() as conn:
        back = conn.execute(text("SELECT png FROM images ORDER BY id")).scalars().all()
    engine.dispose()
    assert [bytes(b) for b in back] == pngs
    assert len(list((tmp_path / "store" / "uploads").glob("*/*.png"))) == 2  # files kept
