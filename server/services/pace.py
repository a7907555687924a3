"""The run's pace as the server measures it: answers (and skips: they are work too) per
minute over a recent window, per annotator and in all, and what that means in minutes for
the queue and the rest of the budget."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from server.models import Answer, Query, Token
from server.services.runs import get_run
from server.services.stats import status_counts
from server.session_schemas import AnnotatorPace, PaceOut

MIN_SPAN_S = 60.0  # a rate is never measured over less than this (one quick answer != 60/min)


@dataclass
class Work:
    answered: int = 0
    skipped: int = 0
    recent: int = 0  # answers and skips in the window
    first: datetime | None = None  # the annotator's first answer or skip in the run

    def add(self, first: datetime | None, recent: int | None) -> None:
        self.recent += int(recent or 0)
        if first is not None and (self.first is None or first < self.first):
            self.first = first


def _grouped(db: Session, stmt: Any, column: Any, since: datetime) -> list[Any]:
    recent = func.sum(case((column >= since, 1), else_=0))
    return list(db.execute(stmt.add_columns(func.count(), func.min(column), recent)).all())


def _work(db: Session, run_id: int, since: datetime) -> dict[int, Work]:
    """Per token id: answers (no corrections) and skips in the run, and those since ``since``."""
    answers = (
        select(Answer.annotator_id)
        .where(Answer.run_id == run_id, Answer.correction.is_(False))
        .group_by(Answer.annotator_id)
    )
    skips = (
        select(Query.annotator_id)
        .where(Query.run_id == run_id, Query.status == "skipped", Query.skipped_at.is_not(None))
        .group_by(Query.annotator_id)
    )
    work: dict[int, Work] = {}
    for who, n, first, recent in _grouped(db, answers, Answer.created_at, since):
        w = work.setdefault(who, Work())
        w.answered = n
        w.add(first, recent)
    for who, n, first, recent in _grouped(db, skips, Query.skipped_at, since):
        w = work.setdefault(who, Work())
        w.skipped = n
        w.add(first, recent)
    return work


def _per_minute(count: int, first: datetime | None, now: datetime, window_s: int) -> float:
    """``count`` events of the window as a rate over the window, or over the time since the
    first event when that is shorter (a session that began 2 minutes ago), at least 60 s."""
    if first is None or count == 0:
        return 0.0
    span = min(float(window_s), max(MIN_SPAN_S, (now - first).total_seconds()))
    return round(count * 60.0 / span, 3)


def _pixels_per_answer(db: Session, run_id: int, since: datetime) -> float:
    """The mean pixel count (``queries.pixels``) of the run's answers since ``since``: 1 for
    pixel queries, a region query's pixels; 1 without answers. Turns the answer rate into the
    rate the pixel budget is spent at."""
    n, pixels = db.execute(
        select(func.count(), func.sum(Query.pixels))
        .select_from(Answer)
        .join(Query, Query.id == Answer.query_id)
        .where(Answer.run_id == run_id, Answer.correction.is_(False), Answer.created_at >= since)
    ).one()
    return int(pixels) / n if n else 1.0


def _minutes(amount: float, rate: float) -> float | None:
    return round(amount / rate, 2) if rate > 0 else None


def get_pace(db: Session, run_id: int, now: datetime, window_s: int) -> PaceOut:
    run = get_run(db, run_id)
    since = now - timedelta(seconds=window_s)
    work = _work(db, run_id, since)
    names = dict(db.execute(select(Token.id, Token.name).where(Token.id.in_(list(work)))).all())
    counts = status_counts(db, run_id, now)
    firsts = [w.first for w in work.values() if w.first is not None]
    recent = sum(w.recent for w in work.values())
    rate = _per_minute(recent, min(firsts, default=None), now, window_s)
    # an expired lease is claimable again: waiting work, like a pending query
    pending = counts.get("pending", 0) + counts.get("expired", 0)
    leased = counts.get("leased", 0)
    budget_left = max(run.budget_total - run.answered, 0)
    people = [
        AnnotatorPace(
            id=who,
            name=names.get(who, f"token {who}"),
            answered=w.answered,
            skipped=w.skipped,
            answers_per_minute=_per_minute(w.recent, w.first, now, window_s),
        )
        for who, w in sorted(work.items())
    ]
    return PaceOut(
        window_s=window_s,
        answers_per_minute=rate,
        active_annotators=sum(1 for w in work.values() if w.recent),
        annotators=people,
        pending=pending,
        leased=leased,
        queue_minutes=_minutes(pending + leased, rate),
        budget_left=budget_left,
        eta_minutes=_minutes(budget_left, rate * _pixels_per_answer(db, run_id, since)),
    )
