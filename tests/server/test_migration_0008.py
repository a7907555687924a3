"""Migration 0008 (region queries, a budget in seconds) up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, inspect, text

from server.migrate import downgrade, upgrade
from server.store import FolderStore
from tests.server.test_migrations import _diff


def _url(backend: str, tmp_path, request) -> str:
    if backend == "postgres":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'm.db'}"


def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def _seed_0007(url: str) -> None:
    """A run, an image (its blob) and a pixel query, as the 0007 server writes them."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, name, classes, target_pixels, budget_rate, strategy, "
                "config, status, budget_total, reserved, answered, consumed_cursor, created_at) "
                "VALUES (1, 'r', '[]', 100, 0.1, 'full', '{}', 'active', 10, 1, 0, 0, "
                "'2024-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO blobs (id, dataset, path, sha256, bytes, width, height, created_at)"
                " VALUES (1, 'uploads', 'a.png', :h, 1, 8, 4, '2024-01-01 00:00:00')"
            ),
            {"h": "0" * 64},
        )
        conn.execute(
            text(
                "INSERT INTO images (id, run_id, key, width, height, blob_id) "
                "VALUES (1, 1, 'k', 8, 4, 1)"
            )
        )
        conn.execute(
            text(
                'INSERT INTO queries (id, run_id, image_id, y, x, "group", score, status, '
                "created_at) VALUES (1, 1, 1, 0, 0, 'high', 0, 'pending', '2024-01-01')"
            )
        )
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_0008_adds_region_pixels_and_budget_seconds_and_drops_them(backend, tmp_path, request):
    url = _url(backend, tmp_path, request)
    store = FolderStore(tmp_path / "store")
    upgrade(url, "0007", store=store)
    assert "region" not in _columns(url, "queries")
    _seed_0007(url)
    upgrade(url, "0008", store=store)
    assert {"region", "pixels"} <= _columns(url, "queries")
    assert "budget_seconds" in _columns(url, "runs")
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT region, pixels FROM queries")).one()
        seconds = conn.execute(text("SELECT budget_seconds FROM runs")).scalar_one()
    engine.dispose()
    assert (row.region, row.pixels, seconds) == (None, 1, None)  # an old query costs 1 pixel
    upgrade(url, "head", store=store)  # the later revisions on top match the models
    assert _diff(url) == []
    downgrade(url, "0007", store=store)
    assert "region" not in _columns(url, "queries")
    assert "pixels" not in _columns(url, "queries")
    assert "budget_seconds" not in _columns(url, "runs")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_0008_downgrade_refuses_while_region_queries_are_stored(backend, tmp_path, request):
    url = _url(backend, tmp_path, request)
    store = FolderStore(tmp_path / "store")
    upgrade(url, "0007", store=store)
    _seed_0007(url)
    upgrade(url, "0008", store=store)
    region = {"top": 0, "left": 0, "height": 1, "width": 2, "runs": [0, 2]}
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE queries SET region = :r, pixels = 2"), {"r": json.dumps(region)})
    engine.dispose()
    with pytest.raises(RuntimeError, match="1 region queries are stored"):
        downgrade(url, "0007", store=store)
    assert {"region", "pixels"} <= _columns(url, "queries")  # nothing changed
    engine = create_engine(url)
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT region, pixels FROM queries")).one()
    engine.dispose()
    stored = kept.region if isinstance(kept.region, dict) else json.loads(kept.region)
    assert (stored, kept.pixels) == (region, 2)
