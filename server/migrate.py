"""Programmatic ``alembic upgrade head`` (tests, the dev loop and ``adamcu-migrate``)."""

from __future__ import annotations

import argparse

from alembic import command
from alembic.config import Config

from server import resources


def alembic_config(database_url: str, store: object | None = None) -> Config:
    cfg = Config(str(resources.require("alembic.ini")))
    cfg.set_main_option("script_location", str(resources.require("migrations")))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["database_url"] = database_url
    if store is not None:  # where 0005 moves the images' PNG bytes (default: the settings')
        cfg.attributes["store"] = store
    return cfg


def upgrade(database_url: str, revision: str = "head", store: object | None = None) -> None:
    command.upgrade(alembic_config(database_url, store), revision)


def downgrade(database_url: str, revision: str = "base", store: object | None = None) -> None:
    command.downgrade(alembic_config(database_url, store), revision)


def main(argv: list[str] | None = None) -> None:
    from server.settings import Settings

    parser = argparse.ArgumentParser(description="Upgrade the adamcu database to head.")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    upgrade(args.database_url or Settings().database_url)


if __name__ == "__main__":
    main()
