"""Migration 0009 (a skip's lead time) up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from server.migrate import downgrade, upgrade
from server.store import FolderStore
from tests.server.test_migration_0008 import _columns, _seed_0007, _url
from tests.server.test_migrations import _diff


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_0009_adds_the_skips_lead_time_and_drops_it_keeping_the_skips(backend, tmp_path, request):
    url = _url(backend, tmp_path, request)
    store = FolderStore(tmp_path / "store")
    upgrade(url, "0007", store=store)
    _seed_0007(url)
    upgrade(url, "0008", store=store)
    assert "skip_lead_time_ms" not in _columns(url, "queries")
    upgrade(url, "0009", store=store)
    assert "skip_lead_time_ms" in _columns(url, "queries")
    engine = create_engine(url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT skip_lead_time_ms FROM queries")).scalar_one() is None
        conn.execute(
            text(
                "UPDATE queries SET status = 'skipped', skipped_at = '2024-01-02', "
                "skip_lead_time_ms = 1200"
            )
        )
    engine.dispose()
    upgrade(url, "head", store=store)  # the later revisions on top match the models
    assert _diff(url) == []
    downgrade(url, "0008", store=store)
    assert "skip_lead_time_ms" not in _columns(url, "queries")
    engine = create_engine(url)
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT status, pixels FROM queries")).one()
    engine.dispose()
    assert tuple(kept) == ("skipped", 1)  # the skip stays; only its seconds are gone
