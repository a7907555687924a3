"""SQLite writers of one process wait in line at ``WriteGate`` (server/db.py), woken the moment
the write transaction before them ends, instead of sleeping in SQLite's busy handler."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from server.db import WriteGate, make_engine, make_sessionmaker


def test_a_writer_waits_for_the_one_before_it_and_times_out_as_busy() -> None:
    gate, first, second = WriteGate(timeout_s=0.2), {}, {}
    gate.enter(first)
    gate.enter(first)  # the same connection again: already in
    t0 = time.perf_counter()
    with pytest.raises(OperationalError, match="database is locked"):
        gate.enter(second)
    assert 0.15 < time.perf_counter() - t0 < 2.0
    assert "write_gate" not in second
    gate.leave(second)  # not in: releases nothing
    released = threading.Timer(0.1, gate.leave, (first,))
    released.start()
    gate.enter(second)  # woken when the first leaves
    released.join()
    gate.leave(second)
    gate.enter(first)  # free again
    gate.leave(first)


def test_write_sessions_release_the_gate_on_commit_and_rollback(tmp_path) -> None:
    """Eight threads each add a row through a write session 20 times, some rolling back: no
    writer is left waiting (a leaked gate would time every later writer out as busy)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}", threads=8)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    writes = make_sessionmaker(engine, write=True)

    def work(k: int) -> None:
        for i in range(20):
            with writes() as db:
                db.execute(text("INSERT INTO t VALUES (:n)"), {"n": i})
                db.commit() if (i + k) % 3 else db.rollback()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - t0 < 8.0
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT count(*) FROM t")).scalar()
    engine.dispose()
    assert kept == sum(1 for k in range(8) for i in range(20) if (i + k) % 3)
