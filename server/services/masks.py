"""``masks.zip``: the answers as label masks in the input folder format, streamed.

The zip is written as it is sent: one image's mask is made (its answers read in a short
session of its own), encoded as PNG and compressed at a time, so the server holds one mask,
never the run's; the size of the run only changes how long the stream runs.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image as PILImage
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Answer, Image, Query
from server.schemas import IGNORE_INDEX, ImageKey, Region
from server.services.runs import get_run

_KEY = TypeAdapter(ImageKey)
UNSAFE_FOLDER = "unsafe-keys"


def mask_entry(image_id: int, key: str) -> str:
    """The zip entry of an image's mask, one-to-one with keys (unique by construction):
    ``<split>/labels/<name>.png`` for the key ``<split>/<name>``, ``labels/<name>.png`` for a
    key without a ``/``: every mask's folder is ``labels`` and the key is the path around it,
    so two keys never share an entry. A stored key outside the safe pattern (stored before it
    was enforced) becomes ``unsafe-keys/image-<image id>.png``: a folder other than
    ``labels`` (so no safe key's entry), and no entry name climbs out of the folder it is
    unpacked into."""
    try:
        key = _KEY.validate_python(key)
    except ValidationError:
        return f"{UNSAFE_FOLDER}/image-{image_id}.png"
    split, slash, name = key.rpartition("/")
    return f"{split}{slash}labels/{name}.png"


@dataclass(frozen=True)
class MasksPlan:
    run_id: int
    classes: list[dict[str, Any]]
    images: list[tuple[int, str, int, int]]  # id, key, width, height; by id


def plan(db: Session, run_id: int) -> MasksPlan:
    """What the zip will hold (404 for an unknown run, before the response starts)."""
    run = get_run(db, run_id)
    rows = db.execute(
        select(Image.id, Image.key, Image.width, Image.height)
        .where(Image.run_id == run_id)
        .order_by(Image.id)
    ).all()
    return MasksPlan(run_id, list(run.classes), [tuple(r) for r in rows])


def paint_region(mask: np.ndarray, region: Region, class_id: int) -> None:
    """Set every pixel of ``region`` (inside ``mask``: the server checked its box) to
    ``class_id``."""
    inside = np.repeat(np.arange(len(region.runs)) % 2 == 1, region.runs)
    box = mask[region.top : region.top + region.height, region.left : region.left + region.width]
    box[inside.reshape(region.height, region.width)] = class_id


def mask_png(db: Session, run_id: int, image_id: int, width: int, height: int) -> bytes:
    """One image's uint8 mask as PNG: ``IGNORE_INDEX`` where unlabeled, else the class of the
    latest answer (by id) of the pixel's query; a region query's answer labels every pixel of
    its region."""
    labels = db.execute(
        select(Query.y, Query.x, Query.region, Answer.class_id)
        .join(Answer, Answer.query_id == Query.id)
        .where(Query.run_id == run_id, Query.image_id == image_id)
        .order_by(Answer.id)
    ).all()
    mask = np.full((height, width), IGNORE_INDEX, np.uint8)
    for y, x, region, class_id in labels:  # ordered by id: the latest answer of a pixel wins
        if region is None:
            mask[y, x] = class_id
        else:
            paint_region(mask, Region.model_validate(region), class_id)
    out = io.BytesIO()
    PILImage.fromarray(mask).save(out, format="PNG")
    return out.getvalue()


class _Sink:
    """A write-only file that keeps what the zip writer wrote until it is taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def zip_stream(sessions: Callable[[], Session], masks: MasksPlan) -> Iterator[bytes]:
    """The zip as a stream of chunks: one per mask, then ``classes.json`` and the central
    directory. Each mask's answers are read in a session of its own (no transaction stays
    open while the client downloads)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf:  # type: ignore[arg-type]
        for image_id, key, width, height in masks.images:
            with sessions() as db:
                png = mask_png(db, masks.run_id, image_id, width, height)
            zf.writestr(mask_entry(image_id, key), png)
            yield sink.take()
        zf.writestr("classes.json", json.dumps({"classes": masks.classes}, indent=1))
    yield sink.take()
