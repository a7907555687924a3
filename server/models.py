"""SQLAlchemy 2.0 models: the database is the record of runs, queries, answers and budget."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC on every backend, returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    pass


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # the runs this token may see (null: every run); never set on an admin token
    run_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    classes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    target_pixels: Mapped[int] = mapped_column(BigInteger)
    budget_rate: Mapped[float] = mapped_column(Float)
    strategy: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="active")
    budget_total: Mapped[int] = mapped_column(BigInteger)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    answered: Mapped[int] = mapped_column(BigInteger, default=0)
    consumed_cursor: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the annotators' seconds the run may spend (RunIn.budget_seconds), or NULL: no limit
    budget_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)


class Blob(Base):
    """One PNG file in the image store (server/store/), shared by every run that registers
    it: where it is, its sha256 (checked when the row was made), size and pixel size."""

    __tablename__ = "blobs"
    __table_args__ = (UniqueConstraint("dataset", "path", name="uq_blobs_dataset_path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset: Mapped[str] = mapped_column(String(100))
    path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Image(Base):
    """A run's image: its key in the run and the stored file it shows (no pixels here)."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("run_id", "key", name="uq_images_run_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(500))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"), index=True)


class Query(Base):
    __tablename__ = "queries"
    __table_args__ = (
        UniqueConstraint("run_id", "image_id", "y", "x", name="uq_queries_pixel"),
        Index("ix_queries_run_status", "run_id", "status", "id"),
        Index("ix_queries_run_skipped", "run_id", "skipped_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    y: Mapped[int] = mapped_column(Integer)
    x: Mapped[int] = mapped_column(Integer)
    group: Mapped[str] = mapped_column(String(20))
    score: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id"), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # when its annotator skipped it (a skip is work done; a finished run's release is not)
    skipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # why its annotator skipped it ("cant_tell": looked, could not tell the class), or NULL
    skip_reason: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # the milliseconds its annotator spent before skipping it (the skip's lead_time_ms), or NULL
    skip_lead_time_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # a region query's Region (box and runs, server.schemas.Region as JSON); NULL: a pixel query
    region: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # what the query costs the pixel budget (schemas.query_pixels): 1, or the region's pixels
    pixels: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class Answer(Base):
    """Append-only; the latest row per query wins."""

    __tablename__ = "answers"
    __table_args__ = (
        Index("ix_answers_run_id", "run_id", "id"),
        Index("ix_answers_query_id", "query_id"),
        Index("ix_answers_run_created", "run_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id", ondelete="CASCADE"))
    class_id: Mapped[int] = mapped_column(Integer)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("tokens.id"))
    lead_time_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    correction: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_iteration", "run_id", "iteration"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    iteration: Mapped[int] = mapped_column(Integer)
    labeled_pixels: Mapped[int] = mapped_column(Integer)
    miou: Mapped[float] = mapped_column(Float)
    per_class_iou: Mapped[list[float | None]] = mapped_column(JSON)
    split: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
