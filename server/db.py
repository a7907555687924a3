"""Engine, session factory and the ``get_db`` dependency."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker


def make_engine(database_url: str) -> Engine:
    """SQLite gets WAL, foreign keys, a busy timeout and BEGIN IMMEDIATE; PostgreSQL a pool."""
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url, connect_args={"check_same_thread": False, "timeout": 30}
        )
        _configure_sqlite(engine)
        return engine
    # same cap as before (40 a process) but more kept open: no connect/close churn under load
    engine = create_engine(database_url, pool_size=32, max_overflow=8, pool_use_lifo=True)
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine, after_s: float = 2.0) -> None:
    """Pessimistic disconnect handling, but only for connections idle ``after_s`` or more.

    Like ``pool_pre_ping`` (a dead connection is replaced before a request sees it), without
    a round trip on every checkout of a busy pool (LIFO keeps the busy connections warm).
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < after_s:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError("stale pooled connection") from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Every transaction takes the write lock up front: read-then-write transactions can
        # then never fail with SQLITE_BUSY_SNAPSHOT under concurrency.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def is_postgres(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session per request, made and closed on the event loop, not in the thread pool.

    Making a session does no I/O, and neither does closing one whose work was committed (its
    connection went back to the pool at the commit); only a session still in a transaction
    (an error mid-way) is closed in a worker thread, since its rollback talks to the
    database. FastAPI runs a plain ``def`` dependency in the thread pool, and each such hop
    costs a wake-up of a worker thread under the GIL: this saves two per request.
    """
    session: Session = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()
