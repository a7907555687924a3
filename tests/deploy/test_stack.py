"""``scripts/stack.sh`` end to end: PostgreSQL + Redis server, worker and oracles as processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture
def database_url() -> Iterator[str]:
    """A PostgreSQL database name that does not exist yet (the stack creates it); dropped after."""
    name = f"adamcu_stack_{uuid.uuid4().hex[:10]}"
    yield f"{PG}/{name}"
    admin = create_engine(f"{PG}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.mark.slow
def test_stack_script_end_to_end(tmp_path: Path, database_url: str, redis_url: str) -> None:
    out = tmp_path / "stack"
    cmd = [
        "bash",
        str(ROOT / "scripts" / "stack.sh"),
        "--database-url",
        database_url,
        "--redis-url",
        redis_url,
        "--out",
        str(out),
        "--size",
        "tiny",
        "--budget",
        "0.01",
        "--iterations",
        "8",
        "--pretrain-iterations",
        "10",
        "--eval-every",
        "4",
        "--oracles",
        "1",
        "--timeout",
        "420",
    ]
    proc = subprocess.run(
        cmd,
        env={**os.environ, "PYTHON": sys.executable},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "budget:" in proc.stdout and "mIoU" in proc.stdout
    summary = json.loads((out / "report.json").read_text())
    engine = create_engine(database_url)
    with engine.connect() as conn:
        answers = conn.execute(text("SELECT count(*) FROM answers")).scalar_one()
        status = conn.execute(text("SELECT status FROM runs")).scalar_one()
        open_q = conn.execute(
            text("SELECT count(*) FROM queries WHERE status IN ('pending', 'leased')")
        ).scalar_one()
    engine.dispose()
    budget = summary["budget"]
    assert budget["answered"] == answers == summary["labeled_pixels"] > 0
    assert budget["answered"] <= budget["expected"]
    assert status == "finished" and open_q == 0 and budget["reserved"] == 0
    # the queue really ran on Redis (db 11): the stream keys of the run exist there
    client = redis.Redis.from_url(redis_url)
    assert any(True for _ in client.scan_iter("adamcu:*"))
    client.close()


def test_stack_refuses_a_non_postgres_url(tmp_path: Path) -> None:
    from stack.local import main

    with pytest.raises(SystemExit, match="PostgreSQL URL"):
        main(["--database-url", f"sqlite:///{tmp_path / 'x.db'}", "--out", str(tmp_path)])


def test_the_human_flag_starts_a_person_sized_session_without_oracles() -> None:
    from stack.local import parse_args

    opts = parse_args(["--human"])
    assert opts.mode == "session" and opts.oracles == 0 and opts.budget == 0.0025
    assert opts.counts["target-train"] == 20  # 0.25 % of 20 x 64 x 128 = 409 pixels
    assert parse_args(["--human", "--budget", "0.001"]).budget == 0.001  # a flag still wins
    assert parse_args([]).mode == "benchmark"
