"""Engine, session factory and the ``get_db`` dependency."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

# Execution option of the engine that write sessions are bound to: on SQLite their
# transactions begin with BEGIN IMMEDIATE (the write lock up front), read sessions' with a
# plain BEGIN, which takes no lock in WAL mode (readers never wait for writers).
WRITE = "adamcu_write"
SQLITE_BUSY_TIMEOUT_S = 10.0  # a writer waits this long for the lock, then the request is 503


def make_engine(database_url: str, threads: int = 8) -> Engine:
    """SQLite gets WAL, foreign keys, a busy timeout and a connection for every worker thread
    (a crowd queues for the write lock instead of for the pool); PostgreSQL a pool."""
    if database_url.startswith("sqlite"):
        memory = database_url in ("sqlite://", "sqlite:///:memory:") or ":memory:" in database_url
        pool = {} if memory else {"pool_size": threads + 2, "max_overflow": threads}
        connect = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        engine = create_engine(database_url, connect_args=connect, **pool)
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


class WriteGate:
    """This process's writers to one SQLite file, in line behind a lock of its own.

    SQLite's busy handler lets a writer that finds the write lock taken sleep in growing
    steps (1 ms up to 100 ms) and try again: under a crowd the lock then sits free while every
    waiter sleeps, and the server idles with requests queued. Writers of this process instead
    wait here, for the write transaction before them to end (its connection back in the pool),
    and are woken the moment it does; ``BEGIN IMMEDIATE`` then finds the lock free. Writers of
    other processes still meet at SQLite's lock (and its busy timeout). A writer that does not
    get in within the busy timeout is refused as SQLite would refuse it (503, nothing done).
    """

    def __init__(self, timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        self._lock = threading.Lock()
        self.timeout_s = timeout_s

    def enter(self, info: dict[str, Any]) -> None:
        """Wait for the gate (``info``: the pooled connection's) unless it already holds it."""
        if info.get("write_gate"):
            return
        if not self._lock.acquire(timeout=self.timeout_s):
            busy = sqlite3.OperationalError("database is locked")
            raise OperationalError("BEGIN IMMEDIATE", None, busy)
        info["write_gate"] = True

    def leave(self, info: dict[str, Any]) -> None:
        if info.pop("write_gate", False):
            self._lock.release()


def _configure_sqlite(engine: Engine) -> None:
    gate = WriteGate()

    @event.listens_for(engine, "checkin")
    def _on_checkin(_conn: Any, record: Any) -> None:
        gate.leave(record.info)  # its write transaction ended (commit, rollback) or was dropped

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A write transaction takes the write lock up front: its reads then can never fail
        # with SQLITE_BUSY_SNAPSHOT when it writes. A read transaction takes no lock.
        if not conn.get_execution_options().get(WRITE, False):
            conn.exec_driver_sql("BEGIN")
            return
        info = conn.connection.info
        gate.enter(info)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except Exception:
            gate.leave(info)  # no transaction began: the next writer may try
            raise


def make_sessionmaker(engine: Engine, write: bool = False) -> sessionmaker[Session]:
    """Sessions for reads, or (``write``) for requests that write: bound to the same pool."""
    bind = engine.execution_options(**{WRITE: True}) if write else engine
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


def begin_write(db: Session) -> None:
    """Make the session's next transaction a write transaction (on SQLite: BEGIN IMMEDIATE),
    for a read request that writes after all (a trainer's cursor, a bootstrapped token). A
    read transaction in progress is ended first; nothing it loaded may be written back."""
    if db.get_bind().dialect.name != "sqlite":
        return
    if db.in_transaction():
        if db.connection().get_execution_options().get(WRITE, False):
            return
        db.rollback()
    db.connection(execution_options={WRITE: True})


def is_postgres(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session per request, made and closed on the event loop, not in the thread pool.

    A ``GET`` gets a read session, other methods a write session. Making a session does no
    I/O, and neither does closing one whose work was committed (its connection went back to
    the pool at the commit). A session still in a transaction (a read, or an error mid-way)
    is rolled back: on SQLite right here (a local call that never waits for a lock, so a
    request that holds the write lock never needs a free worker thread to let it go, while
    every worker thread may be waiting for that lock), on PostgreSQL in a worker thread
    (a round trip). FastAPI runs a plain ``def`` dependency in the thread pool, and each
    such hop costs a wake-up of a worker thread under the GIL: this saves two per request.
    """
    state = request.app.state
    write = request.method not in _READ_METHODS
    session: Session = (state.write_sessionmaker if write else state.sessionmaker)()
    try:
        yield session
    finally:
        if session.in_transaction() and session.get_bind().dialect.name != "sqlite":
            await run_in_threadpool(session.close)
        else:
            session.close()
