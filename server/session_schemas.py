"""Wire models of the session mode (docs/api.md: withdraw, release, pace).

Pure pydantic, like ``server/schemas.py`` (which is at its size limit). Only the server
imports these: the client's calls return the JSON as dicts.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from server.schemas import MAX_QUERIES_PER_BATCH, DbInt, QueryStatus, Strict

PACE_WINDOW_S = 300


class QueryIdsIn(Strict):
    ids: list[DbInt] = Field(min_length=1, max_length=MAX_QUERIES_PER_BATCH)


class KeptQuery(BaseModel):
    id: int
    status: QueryStatus


class WithdrawOut(BaseModel):
    withdrawn: list[int]  # every listed id now withdrawn (earlier withdrawals included)
    kept: list[KeptQuery]  # leased, answered or skipped: never withdrawn


class ReleaseOut(BaseModel):
    released: list[int]  # the caller's leases now pending again


class AnnotatorPace(BaseModel):
    id: int  # the token's id (names need not be unique)
    name: str
    answered: int  # in the whole run (corrections not counted)
    skipped: int  # in the whole run
    answers_per_minute: float  # answers and skips in the window


class PaceOut(BaseModel):
    window_s: int
    answers_per_minute: float
    active_annotators: int
    annotators: list[AnnotatorPace]
    pending: int
    leased: int
    queue_minutes: float | None  # (pending + leased) / rate; None while there is no rate
    budget_left: int  # expected - answered: pixels still to be labeled
    eta_minutes: float | None  # budget_left / rate
