"""Exports: the answer listing (json/csv) and a zip of per-image label masks."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

import numpy as np
from PIL import Image as PILImage
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Answer, Image, Query, Token
from server.schemas import IGNORE_INDEX, ImageKey
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


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_KEY = TypeAdapter(ImageKey)


def csv_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading ``'`` (OWASP CSV
    injection rule: cells starting with = + - @, tab or carriage return); numbers stay."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def mask_entry(image_id: int, key: str) -> str:
    """The zip entry of an image's mask in the input folder format: ``<split>/labels/<id>.png``
    for the key ``<split>/<id>`` (a key without a split goes to ``target-train``). A stored key
    outside the safe pattern (stored before it was enforced) becomes ``image-<image id>``: no
    entry name climbs out of the folder it is unpacked into."""
    try:
        key = _KEY.validate_python(key)
    except ValidationError:
        key = f"image-{image_id}"
    split, _, name = key.rpartition("/")
    return f"{split or 'target-train'}/labels/{name}.png"


def masks_zip(db: Session, run_id: int) -> bytes:
    """The answers as the input folder format: ``<split>/labels/<id>.png`` uint8 masks
    (``IGNORE_INDEX``: unlabeled; the latest answer per query wins) and ``classes.json`` as
    ``{"classes": [...]}``, so the zip unpacks over the dataset folder (docs/data.md) and
    trains as it is."""
    run = get_run(db, run_id)
    images = db.execute(
        select(Image.id, Image.key, Image.width, Image.height).where(Image.run_id == run_id)
    ).all()
    labels = db.execute(
        select(Query.image_id, Query.y, Query.x, Answer.class_id)
        .join(Query, Query.id == Answer.query_id)
        .where(Answer.run_id == run_id)
        .order_by(Answer.id)
    ).all()
    masks = {im.id: np.full((im.height, im.width), IGNORE_INDEX, np.uint8) for im in images}
    for image_id, y, x, class_id in labels:  # ordered by id: the latest answer wins
        masks[image_id][y, x] = class_id
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for im in images:
            png = io.BytesIO()
            PILImage.fromarray(masks[im.id]).save(png, format="PNG")
            zf.writestr(mask_entry(im.id, im.key), png.getvalue())
        zf.writestr("classes.json", json.dumps({"classes": run.classes}, indent=1))
    return buf.getvalue()
