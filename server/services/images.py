"""A run's images: registered by reference to the image store (or put there from an upload),
unique key per run; the stored file for the UI and crops for the annotator."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.errors import BadRequest, CropTooLarge, ImageNotFound, InvalidImage
from server.models import Blob, Image
from server.schemas_images import ImageIn, ImageOut, ImageRefIn
from server.services.runs import get_run
from server.services.store import FileFacts, blob_rows, inspect_file, known_blobs, store_bytes
from server.store import Store
from server.store.base import HashMismatch
from server.store.cache import DecodedCache

# A crop's output side, (2r + 1) x scale, is at most this: the default radius (16) at the
# largest scale (32), or the largest radius (512) at scale 1. Bounds a crop's memory and CPU.
MAX_CROP_SIDE = 33 * 32
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000  # ADAMCU_MAX_IMAGE_PIXELS; a 2048x1024 frame is 2.1 M
Item = ImageIn | ImageRefIn


def _decode_b64(item: ImageIn, store: Store, max_pixels: int) -> FileFacts:
    try:
        data = base64.b64decode(item.png_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"Image {item.key!r}: png_base64 is not valid base64.") from exc
    return store_bytes(store, data, repr(item.key), max_pixels)


def _check_declared(item: Item, facts: FileFacts) -> None:
    width, height = item.width or facts.width, item.height or facts.height
    if (width, height) != (facts.width, facts.height):
        raise InvalidImage(
            f"Image {item.key!r} is {facts.width}x{facts.height}, not {width}x{height}."
        )


def _facts(db: Session, store: Store, items: list[Item], max_pixels: int) -> list[FileFacts]:
    """Each item's stored file: known files by their ``blobs`` row (the hash must be the one
    recorded), new ones read and checked; base64 ones written to ``uploads`` first."""
    refs = {(i.dataset, i.path or i.key) for i in items if isinstance(i, ImageRefIn)}
    known = known_blobs(db, refs)
    out = []
    for item in items:
        if isinstance(item, ImageIn):
            facts = _decode_b64(item, store, max_pixels)
        elif (blob := known.get((item.dataset, item.path or item.key))) is not None:
            if blob.sha256 != item.sha256:
                raise HashMismatch(
                    f"Image {item.key!r}: {blob.dataset}/{blob.path} was registered with "
                    f"sha256 {blob.sha256}, not {item.sha256}."
                )
            facts = FileFacts(
                blob.dataset, blob.path, blob.sha256, blob.bytes, blob.width, blob.height
            )
        else:
            facts = inspect_file(
                store, item.dataset, item.path or item.key, item.sha256, max_pixels
            )
        _check_declared(item, facts)
        out.append(facts)
    return out


def _out(row: Image) -> ImageOut:
    return ImageOut(id=row.id, key=row.key, width=row.width, height=row.height)


def register_images(
    db: Session,
    store: Store,
    run_id: int,
    items: list[Item],
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> list[ImageOut]:
    """Record new keys (by reference to their stored file), return existing rows for known
    keys (idempotent), in request order. Nothing is recorded if any item is refused."""
    get_run(db, run_id)
    facts = dict(zip([i.key for i in items], _facts(db, store, items, max_pixels), strict=True))
    for _attempt in range(2):
        existing = {
            row.key: row
            for row in db.execute(
                select(Image).where(Image.run_id == run_id, Image.key.in_(list(facts)))
            ).scalars()
        }
        try:
            blobs = blob_rows(db, [f for k, f in facts.items() if k not in existing])
            new = [
                Image(
                    run_id=run_id,
                    key=k,
                    width=f.width,
                    height=f.height,
                    blob_id=blobs[(f.dataset, f.path)].id,
                )
                for k, f in facts.items()
                if k not in existing
            ]
            db.add_all(new)
            db.commit()
        except IntegrityError:  # a concurrent request registered the same key or file
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


def stored_file(db: Session, image_id: int) -> Blob:
    """The store row of an image (its dataset, path and size)."""
    blob = db.execute(
        select(Blob).join(Image, Image.blob_id == Blob.id).where(Image.id == image_id)
    ).scalar_one_or_none()
    if blob is None:
        raise ImageNotFound(f"Image {image_id} does not exist.")
    return blob


def check_crop(r: int, scale: int) -> None:
    side = 2 * r + 1
    if side * scale > MAX_CROP_SIDE:
        raise CropTooLarge(
            f"A crop is at most {MAX_CROP_SIDE} px a side: (2r+1) x scale = {side} x {scale} "
            f"= {side * scale}. Ask for a smaller r or scale."
        )


def _decoder(store: Store, blob: Blob):  # noqa: ANN202
    def decode() -> PILImage.Image:
        try:
            with store.open(blob.dataset, blob.path) as f:
                img = PILImage.open(f, formats=["PNG"])
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise InvalidImage("The stored image cannot be decoded.") from exc

    return decode


def crop_png(
    store: Store, cache: DecodedCache, blob: Blob, cx: int, cy: int, r: int, scale: int = 1
) -> bytes:
    """(2r+1)-square crop around pixel (cx, cy), zero-padded at borders, nearest upscaled.

    The output side is bounded (``MAX_CROP_SIDE``, else 422 before any decoding); the image is
    decoded once into the process's bounded cache (``ADAMCU_CROP_CACHE_BYTES``)."""
    check_crop(r, scale)
    if not (0 <= cx < blob.width and 0 <= cy < blob.height):
        raise BadRequest(f"Pixel ({cx}, {cy}) lies outside the {blob.width}x{blob.height} image.")
    img = cache.get(blob.id, _decoder(store, blob))
    out = img.crop((cx - r, cy - r, cx + r + 1, cy + r + 1))  # black outside the image
    side = 2 * r + 1
    if scale > 1:
        out = out.resize((side * scale, side * scale), PILImage.Resampling.NEAREST)
    buf = io.BytesIO()
    out.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
