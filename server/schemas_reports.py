"""Wire contract of what the service reports about a run: its metrics (target-val mIoU by
labels, posted by the trainer), its live counters (the dashboard's stats), its health, and
the envelope of every error.

Pure pydantic, like ``server.schemas``. Only the server imports it: the client's calls return
the JSON as dicts.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from server.schemas import DbInt, Finite, Label, Strict


class MetricIn(Strict):
    iteration: DbInt
    labeled_pixels: DbInt = 0
    miou: Finite
    per_class_iou: list[Finite | None] = Field(default_factory=list)
    split: Label = "target-val"


class MetricOut(MetricIn):
    model_config = ConfigDict(extra="ignore")
    id: int
    created_at: datetime
    # the annotators' seconds spent by then: the lead_time_ms of the run's answer rows made at
    # or before created_at, summed / 1000 (no lead time: 0); the dashboard's annotator-hours
    annotator_seconds: float = 0.0


class MetricsOut(BaseModel):
    metrics: list[MetricOut]


class StatsOut(BaseModel):
    pending: int
    leased: int  # leases still running
    expired: int = 0  # leases past their lease_expires_at, claimable again
    answered: int
    skipped: int
    cant_tell: int = 0  # of the skipped: the annotator could not tell the class
    withdrawn: int = 0
    annotators_active: int
    answers_last_minute: int


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class HealthOut(BaseModel):
    status: str
