"""An empty database upgraded to head matches the models exactly (no autogenerate diff)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from server.migrate import downgrade, upgrade
from server.models import Base


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
