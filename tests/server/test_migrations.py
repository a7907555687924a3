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
def test_0005_moves_image_bytes_into_the_store_and_back(backend, tmp_path, request):
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


def _seed_withdrawn(url: str) -> None:
    """A run with a withdrawn and a skipped query (written as the 0004 server does)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, name, classes, target_pixels, budget_rate, strategy, "
                "config, status, budget_total, reserved, answered, consumed_cursor, created_at) "
                "VALUES (1, 'r', '[]', 100, 0.1, 'full', '{}', 'active', 10, 0, 0, 0, "
                "'2024-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO images (id, run_id, key, width, height, png) "
                "VALUES (1, 1, 'k', 2, 2, :png)"
            ),
            {"png": b"x"},
        )
        for qid, status, skipped_at in ((1, "withdrawn", None), (2, "skipped", "2024-01-01")):
            conn.execute(
                text(
                    'INSERT INTO queries (id, run_id, image_id, y, x, "group", score, status, '
                    "created_at, skipped_at) VALUES (:id, 1, 1, 0, :id, 'high', 0, :status, "
                    "'2024-01-01 00:00:00', :skipped_at)"
                ),
                {"id": qid, "status": status, "skipped_at": skipped_at},
            )
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_0004_adds_skip_times_and_downgrades_withdrawn_to_skipped(backend, tmp_path, request):
    url = (
        request.getfixturevalue("pg_url")
        if backend == "postgres"
        else (f"sqlite:///{tmp_path / 'm.db'}")
    )
    upgrade(url, "0003")
    engine = create_engine(url)
    assert "skipped_at" not in {c["name"] for c in inspect(engine).get_columns("queries")}
    engine.dispose()
    upgrade(url, "0004")
    engine = create_engine(url)
    assert "skipped_at" in {c["name"] for c in inspect(engine).get_columns("queries")}
    engine.dispose()
    _seed_withdrawn(url)
    downgrade(url, "0003")
    engine = create_engine(url)
    assert "skipped_at" not in {c["name"] for c in inspect(engine).get_columns("queries")}
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, status FROM queries ORDER BY id")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "skipped"), (2, "skipped")]
    upgrade(url, store=FolderStore(tmp_path / "store"))
    assert _diff(url) == []
