"""Exports: the answer listing (json/csv); the masks zip is ``server/services/masks.py``."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Answer, Image, Query, Token
from server.services.runs import get_run

FIELDS = (
    "answer_id",
    "query_id",
    "image_id",
    "image_key",
    "y",
    "x",
    "class_id",
    "group",
    "annotator",
    "lead_time_ms",
    "correction",
    "created_at",
    "region",
    "kept",
)


def answer_rows(db: Session, run_id: int) -> list[dict[str, Any]]:
    """Every answer row of the run by id; ``kept``: the row whose label the query keeps (its
    latest, the one masks.zip writes), so the row's ``annotator`` says whose label it is."""
    get_run(db, run_id)
    rows = db.execute(
        select(
            Answer.id.label("answer_id"),
            Answer.query_id,
            Query.image_id,
            Image.key.label("image_key"),
            Query.y,
            Query.x,
            Answer.class_id,
            Query.group,
            Token.name.label("annotator"),
            Answer.lead_time_ms,
            Answer.correction,
            Answer.created_at,
            Query.region,
        )
        .join(Query, Query.id == Answer.query_id)
        .join(Image, Image.id == Query.image_id)
        .join(Token, Token.id == Answer.annotator_id)
        .where(Answer.run_id == run_id)
        .order_by(Answer.id)
    ).all()
    latest = {r.query_id: r.answer_id for r in rows}  # ordered by id: the latest one wins
    return [
        {
            **r._mapping,
            "created_at": r.created_at.isoformat(),
            "kept": latest[r.query_id] == r.answer_id,
        }
        for r in rows
    ]


# a spreadsheet runs a cell as a formula when it starts with one of these, in ASCII or in
# their full-width forms, even after spaces, a non-breaking space or an invisible character
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _lead(text: str) -> str:
    """``text`` from its first character that is not a space, a control or a format character
    (U+00A0, U+200B, U+FEFF, U+202E...)."""
    for i, ch in enumerate(text):
        if not (ch.isspace() or unicodedata.category(ch) in ("Zs", "Cc", "Cf")):
            return text[i:]
    return ""


def csv_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading ``'`` (OWASP CSV
    injection rule: cells starting with = + - @, tab or carriage return, here also after
    leading blanks and invisible characters); numbers stay."""
    if isinstance(value, str) and (
        value.startswith(_FORMULA_START) or _lead(value).startswith(_FORMULA_START)
    ):
        return "'" + value
    return value


def _cell(key: str, value: Any) -> Any:
    """A csv cell: a region as its JSON (empty for a pixel query), text made safe."""
    if key == "region":
        return "" if value is None else json.dumps(value, separators=(",", ":"))
    return csv_cell(value)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows({k: _cell(k, v) for k, v in row.items()} for row in rows)
    return buf.getvalue()
