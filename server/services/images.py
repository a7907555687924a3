"""Target images: PNG bytes in the database, unique key per run; crops for the annotator."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.errors import BadRequest, CropTooLarge, ImageNotFound, ImageTooLarge, InvalidImage
from server.models import Image
from server.schemas import ImageIn, ImageOut
from server.services.runs import get_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A crop's output side, (2r + 1) x scale, is at most this: the default radius (16) at the
# largest scale (32), or the largest radius (512) at scale 1. Bounds a crop's memory and CPU.
MAX_CROP_SIDE = 33 * 32
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000  # ADAMCU_MAX_IMAGE_PIXELS; a 2048x1024 frame is 2.1 M


def _check_pixels(key: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"Image {key!r} is {width}x{height} = {width * height} pixels; at most "
            f"{max_pixels} are accepted (ADAMCU_MAX_IMAGE_PIXELS)."
        )


def _decode(item: ImageIn, max_pixels: int) -> bytes:
    """The PNG bytes of ``item``: its size read from the header only (never decoded here),
    checked against the declared size and ``max_pixels`` before anything decodes it."""
    _check_pixels(item.key, item.width, item.height, max_pixels)
    try:
        data = base64.b64decode(item.png_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"Image {item.key!r}: png_base64 is not valid base64.") from exc
    if not data.startswith(PNG_MAGIC):
        raise InvalidImage(f"Image {item.key!r} is not a PNG.")
    try:
        img = PILImage.open(io.BytesIO(data), formats=["PNG"])
        size = img.size
        _check_pixels(item.key, size[0], size[1], max_pixels)
        img.verify()  # chunk structure and checksums, without decoding the pixels
    except PILImage.DecompressionBombError as exc:
        raise ImageTooLarge(f"Image {item.key!r} has too many pixels.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"Image {item.key!r} cannot be read as PNG.") from exc
    if size != (item.width, item.height):
        raise InvalidImage(
            f"Image {item.key!r} is {size[0]}x{size[1]}, not {item.width}x{item.height}."
        )
    return data


def _out(row: Image) -> ImageOut:
    return ImageOut(id=row.id, key=row.key, width=row.width, height=row.height)


def register_images(
    db: Session, run_id: int, items: list[ImageIn], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> list[ImageOut]:
    """Store new keys, return existing rows for known keys (idempotent), in request order."""
    get_run(db, run_id)
    blobs = {item.key: (item, _decode(item, max_pixels)) for item in items}
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
    """(2r+1)-square crop around pixel (cx, cy), zero-padded at borders, nearest upscaled.

    The output side is bounded (``MAX_CROP_SIDE``, else 422 before any decoding)."""
    side = 2 * r + 1
    if side * scale > MAX_CROP_SIDE:
        raise CropTooLarge(
            f"A crop is at most {MAX_CROP_SIDE} px a side: (2r+1) x scale = {side} x {scale} "
            f"= {side * scale}. Ask for a smaller r or scale."
        )
    try:
        img = PILImage.open(io.BytesIO(png))
        w, h = img.size
        if not (0 <= cx < w and 0 <= cy < h):
            raise BadRequest(f"Pixel ({cx}, {cy}) lies outside the {w}x{h} image.")
        img = img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage("The stored image cannot be decoded.") from exc
    out = img.crop((cx - r, cy - r, cx + r + 1, cy + r + 1))  # black outside the image
    if scale > 1:
        out = out.resize((side * scale, side * scale), PILImage.Resampling.NEAREST)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()
