"""Startup: recreate dispatcher streams that Redis lost, from the database's rows."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.models import Run
from server.queue import Dispatcher, RedisQueue
from server.services.leases import live_query_ids


def rebuild_missing_streams(make_session: sessionmaker[Session], queue: Dispatcher) -> int:
    if not isinstance(queue, RedisQueue):
        return 0
    rebuilt = 0
    with make_session() as db:
        run_ids = list(db.execute(select(Run.id).where(Run.status == "active")).scalars())
        db.rollback()
        for run_id in run_ids:
            if not queue.group_exists(run_id):
                queue.rebuild(run_id, lambda r=run_id: live_query_ids(db, r))
                rebuilt += 1
    return rebuilt
