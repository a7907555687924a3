"""Target images: PNG bytes in the database, unique key per run; crops for the annotator."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.errors import BadRequest, ImageNotFound, InvalidImage
from server.models import Image
from server.schemas import ImageIn, ImageOut
from server.services.runs import get_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _decode(item: ImageIn) -> bytes:
    try:
        data = base64.b64decode(item.png_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"Image {item.key!r}: png_base64 is not valid base64.") from exc
    if not data.startswith(PNG_MAGIC):
        raise InvalidImage(f"Image {item.key!r} is not a PNG.")
    try:
        size = PILImage.open(io.BytesIO(data)).size
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidImage(f"Image {item.key!r} cannot be read as PNG.") from exc
    if size != (item.width, item.height):
        raise InvalidImage(
            f"Image {item.key!r} is {size[0]}x{size[1]}, not {item.width}x{item.height}."
        )
    return data


def _out(row: Image) -> ImageOut:
    return ImageOut(id=row.id, key=row.key, width=row.width, height=row.height)


def register_images(db: Session, run_id: int, items: list[ImageIn]) -> list[ImageOut]:
    """Store new keys, return existing rows for known keys (idempotent), in request order."""
    get_run(db, run_id)
    blobs = {item.key: (item, _decode(item)) for item in items}
    for _attempt in range(2):
        existing = {
            row.key: row
            for row in db.execute(
                select(Image).where(Image.run_id == run_id, Image.key.in_(list(blobs)))
            ).scalars()
        }
        new = [
            Image(run_id=run_id, key=k, width=it.width, height=it.height, png=png)
            for k, (it, png) in blobs.items()
            if k not in existing
        ]
        db.add_all(new)
        try:
            db.commit()
        except IntegrityError:  # a concurrent request registered the same key
            db.rollback()
            continue
        existing.update({row.key: row for row in new})
        return [_out(existing[item.key]) for item in items]
    raise BadRequest("Concurrent registration of the same image keys; retry.")


def list_images(db: Session, run_id: int) -> list[ImageOut]:
    get_run(db, run_id)
    rows = db.execute(
        select(Image.id, Image.key, Image.width, Image.height)
        .where(Image.run_id == run_id)
        .order_by(Image.id)
    ).all()
    return [ImageOut(id=r.id, key=r.key, width=r.width, height=r.height) for r in rows]


def get_png(db: Session, image_id: int) -> bytes:
    png = db.execute(select(Image.png).where(Image.id == image_id)).scalar_one_or_none()
    if png is None:
        raise ImageNotFound(f"Image {image_id} does not exist.")
    return png


def crop_png(png: bytes, cx: int, cy: int, r: int, scale: int = 1) -> bytes:
    """(2r+1)-square crop around pixel (cx, cy), zero-padded at borders, nearest upscaled."""
    img = np.asarray(PILImage.open(io.BytesIO(png)).convert("RGB"))
    h, w = img.shape[:2]
    if not (0 <= cx < w and 0 <= cy < h):
        raise BadRequest(f"Pixel ({cx}, {cy}) lies outside the {w}x{h} image.")
    padded = np.pad(img, ((r, r), (r, r), (0, 0)))
    out = padded[cy : cy + 2 * r + 1, cx : cx + 2 * r + 1]
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(out)).save(buf, format="PNG")
    return buf.getvalue()
