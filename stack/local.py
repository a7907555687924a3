"""``python -m stack.local`` (``scripts/stack.sh``): the compose stack without Docker.

The same processes as ``docker-compose.yml``, as local processes on PostgreSQL and Redis:
``python -m server.migrate``, ``python -m server.main`` (Redis Streams queue), the trainer
worker (``python -m trainer.worker``) and simulated oracles (``python -m oracle``), on the
bundled benchmark. It checks that PostgreSQL and Redis answer (and creates the database when
it is missing), then runs :func:`stack.loop.run_loop` and prints the budget and mIoU.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from stack.loop import LoopOptions, run_and_report
from stack.oracles import add_cost_model_arguments, cost_model_options
from stack.watch import add_deadline_arguments
from trainer.bench.presets import PRESETS

DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/adamcu"
REDIS_URL = "redis://127.0.0.1:6379/0"
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"source-train": 40, "target-train": 16, "target-val": 8, "target-test": 8},
    "quick": dict(PRESETS["quick"].counts),
    # --human: a session a person finishes in ~15 min (budget 0.25 % = 409 pixels)
    "session": {"source-train": 200, "target-train": 20, "target-val": 20, "target-test": 40},
}
HUMAN = {"size": "session", "budget": 0.0025, "pretrain_iterations": 400}


def ensure_database(database_url: str) -> None:
    """Create the PostgreSQL database named in ``database_url`` if it does not exist."""
    url = make_url(database_url)
    if not url.drivername.startswith("postgresql"):
        raise SystemExit(f"adamcu stack: a PostgreSQL URL is needed, got {url.drivername}")
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}
            ).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    except OperationalError as exc:
        raise SystemExit(
            f"adamcu stack: PostgreSQL does not answer at "
            f"{url.render_as_string(hide_password=True)}: {exc.orig}"
        ) from None
    finally:
        admin.dispose()


def check_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SystemExit(f"adamcu stack: Redis does not answer at {redis_url}: {exc}") from None
    finally:
        client.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/stack.sh", description=__doc__)
    p.add_argument("--database-url", default=DATABASE_URL, help="PostgreSQL (created if missing)")
    p.add_argument("--redis-url", default=REDIS_URL)
    p.add_argument("--out", default="outputs/stack")
    p.add_argument("--data", default=None, help="benchmark folder (default: <out>/data)")
    p.add_argument("--size", choices=sorted(SIZES), default="quick")
    p.add_argument("--strategy", default="full")
    p.add_argument("--budget", type=float, default=0.017)
    p.add_argument("--iterations", type=int, default=250)
    p.add_argument("--pretrain-iterations", type=int, default=800)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--oracles", type=int, default=2)
    add_cost_model_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    add_deadline_arguments(p)
    p.add_argument(
        "--human",
        action="store_true",
        help="a session for people: worker --mode session, no oracles, 20 target images, "
        "budget 0.0025; prints the annotator and dashboard URLs, the commands for more "
        "tokens and for ending it, and where the data and logs are (explicit flags win)",
    )
    return p


def parse_args(
    argv: Sequence[str] | None = None, p: argparse.ArgumentParser | None = None
) -> LoopOptions:
    p = p or build_parser()
    a = p.parse_args(argv)
    if a.human:
        for key, value in HUMAN.items():
            if getattr(a, key) == p.get_default(key):
                setattr(a, key, value)
        a.oracles = 0
    out = Path(a.out)
    return LoopOptions(
        out=out,
        data=Path(a.data) if a.data else out / "data",
        counts=dict(SIZES[a.size]),
        strategy=a.strategy,
        budget=a.budget,
        iterations=a.iterations,
        pretrain_iterations=a.pretrain_iterations,
        eval_every=a.eval_every,
        oracles=a.oracles,
        **cost_model_options(p, a),
        seed=a.seed,
        mode="session" if a.human else "benchmark",
        database_url=a.database_url,
        redis_url=a.redis_url,
        stall_timeout=a.stall_timeout,
        timeout=a.timeout,
        port=a.port,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parse_args(argv, parser)
    assert opts.database_url and opts.redis_url
    ensure_database(opts.database_url)
    check_redis(opts.redis_url)
    return run_and_report(opts, parser)


if __name__ == "__main__":
    sys.exit(main())
