"""Wire contract around queries beside their own shape (docs/api.md): the ids a batch gets,
the query and answer listings the trainer reads, claims, skips, answers (single and batch,
corrections) and undo.

Pure pydantic, like ``server.schemas``.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from server.schemas import (
    MAX_ANSWERS_PER_BATCH,
    ClassId,
    DbInt,
    Group,
    QueryOut,
    Region,
    SkipReason,
    Strict,
)


class QueryIdsOut(BaseModel):
    ids: list[int]


class QueriesPage(BaseModel):
    queries: list[QueryOut]
    cursor: int


# the longest a claim may wait for new queries (seconds; server/wakeups.py; it waits on the
# event loop, holding no worker thread)
MAX_CLAIM_WAIT_SECONDS = 10.0


class ClaimIn(Strict):
    n: int = Field(default=10, ge=1, le=500)
    lease_seconds: int | None = Field(default=None, ge=5, le=3600)
    # seconds to wait for the run's new queries when none is claimable now (0: answer at once)
    wait_seconds: float = Field(default=0.0, ge=0.0, le=MAX_CLAIM_WAIT_SECONDS)


class ClaimOut(BaseModel):
    queries: list[QueryOut]


class SkipIn(Strict):
    reason: SkipReason | None = None
    # the milliseconds the person spent before skipping, as an answer's (counted in /budget)
    lead_time_ms: DbInt | None = None


class AnswerIn(Strict):
    class_id: ClassId
    lead_time_ms: DbInt | None = None
    correction: bool = False


class BatchAnswerItem(Strict):
    query_id: DbInt
    class_id: ClassId
    lead_time_ms: DbInt | None = None


class BatchAnswersIn(Strict):
    answers: list[BatchAnswerItem] = Field(min_length=1, max_length=MAX_ANSWERS_PER_BATCH)


class AnswerOut(BaseModel):
    id: int
    query_id: int
    run_id: int
    image_id: int
    y: int
    x: int
    class_id: int
    group: Group
    annotator: str
    lead_time_ms: int | None
    correction: bool
    created_at: datetime
    region: Region | None = None  # a region query's pixels: the class labels every one


class AnswersOut(BaseModel):
    answers: list[AnswerOut]


class AnswersPage(BaseModel):
    answers: list[AnswerOut]
    cursor: int


class UndoOut(BaseModel):
    reopened: bool
    query: QueryOut
