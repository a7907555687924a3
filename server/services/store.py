"""Files in the image store: checked once (PNG header, pixel limit, sha256, chunk CRCs) when
their ``blobs`` row is made, then shared by every run that registers them."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.errors import ImageTooLarge, InvalidImage
from server.models import Blob
from server.schemas_images import MAX_SIDE
from server.store import UPLOADS, Store, upload_path
from server.store.base import HashMismatch, hash_stream

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class UploadTooLarge(ImageTooLarge):
    code = "payload_too_large"


@dataclass(frozen=True)
class FileFacts:
    dataset: str
    path: str
    sha256: str
    bytes: int
    width: int
    height: int


def check_pixels(label: str, width: int, height: int, max_pixels: int) -> None:
    """The one size check of every image (its PNG header), however it came in."""
    if max(width, height) > MAX_SIDE:
        raise ImageTooLarge(
            f"Image {label} is {width}x{height}; at most {MAX_SIDE} pixels a side are accepted."
        )
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"Image {label} is {width}x{height} = {width * height} pixels; at most "
            f"{max_pixels} are accepted (ADAMCU_MAX_IMAGE_PIXELS)."
        )


def png_size(f: BinaryIO, label: str, max_pixels: int) -> tuple[int, int]:
    """Width and height from the PNG header (pixels never decoded), then the chunk structure
    and CRCs verified; the pixel limit is checked before that."""
    f.seek(0)
    if f.read(8) != PNG_MAGIC:
        raise InvalidImage(f"Image {label} is not a PNG.")
    f.seek(0)
    try:
        img = PILImage.open(f, formats=["PNG"])
        size = img.size
        check_pixels(label, size[0], size[1], max_pixels)
        img.verify()
    except PILImage.DecompressionBombError as exc:
        raise ImageTooLarge(f"Image {label} has too many pixels.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"Image {label} cannot be read as PNG.") from exc
    return size


def inspect_file(
    store: Store, dataset: str, path: str, sha256: str | None, max_pixels: int
) -> FileFacts:
    """Facts of a file already in the store; 422 ``hash_mismatch`` unless its sha256 is
    ``sha256`` (when given)."""
    label = f"{dataset}/{path}"
    with store.open(dataset, path) as f:
        width, height = png_size(f, label, max_pixels)
        f.seek(0)
        digest, size = hash_stream(f)
    if sha256 is not None and digest != sha256:
        raise HashMismatch(f"{label}: the file's sha256 is {digest}, not {sha256}.")
    return FileFacts(dataset, path, digest, size, width, height)


def store_bytes(store: Store, data: bytes, label: str, max_pixels: int) -> FileFacts:
    """Put PNG bytes (the old base64 route) into ``uploads``, content-addressed."""
    import io

    width, height = png_size(io.BytesIO(data), label, max_pixels)
    digest = hashlib.sha256(data).hexdigest()
    path = upload_path(digest)
    if not store.exists(UPLOADS, path):
        with tempfile.NamedTemporaryFile(dir=store.scratch(), delete=False) as tmp:
            tmp.write(data)
        store.put_file(UPLOADS, path, Path(tmp.name))
    return FileFacts(UPLOADS, path, digest, len(data), width, height)


async def receive_upload(chunks: AsyncIterator[bytes], scratch: Path, limit: int) -> Path:
    """Write a streamed body to a temporary file in ``scratch``; over ``limit`` bytes: 413
    and the file is removed (nothing stored)."""
    fd, name = tempfile.mkstemp(dir=scratch, suffix=".part")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise UploadTooLarge(
                        f"The upload exceeds {limit} bytes (ADAMCU_MAX_UPLOAD_BYTES)."
                    )
                out.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def finish_upload(store: Store, local: Path, max_pixels: int) -> FileFacts:
    """Check the received file and move it to its content address in ``uploads``."""
    try:
        with local.open("rb") as f:
            width, height = png_size(f, "upload", max_pixels)
            f.seek(0)
            digest, size = hash_stream(f)
        path = upload_path(digest)
        if not store.exists(UPLOADS, path):
            store.put_file(UPLOADS, path, local)
    finally:
        local.unlink(missing_ok=True)
    return FileFacts(UPLOADS, path, digest, size, width, height)


def known_blobs(db: Session, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], Blob]:
    found: dict[tuple[str, str], Blob] = {}
    for dataset in {d for d, _ in wanted}:
        paths = [p for d, p in wanted if d == dataset]
        for i in range(0, len(paths), 500):
            rows = db.execute(
                select(Blob).where(Blob.dataset == dataset, Blob.path.in_(paths[i : i + 500]))
            ).scalars()
            found.update({(b.dataset, b.path): b for b in rows})
    return found


def blob_rows(db: Session, facts: list[FileFacts]) -> dict[tuple[str, str], Blob]:
    """The ``blobs`` rows of ``facts``, added to the session where missing (not committed)."""
    rows = known_blobs(db, {(f.dataset, f.path) for f in facts})
    for f in facts:
        if (f.dataset, f.path) not in rows:
            rows[(f.dataset, f.path)] = Blob(
                dataset=f.dataset,
                path=f.path,
                sha256=f.sha256,
                bytes=f.bytes,
                width=f.width,
                height=f.height,
            )
            db.add(rows[(f.dataset, f.path)])
    db.flush()
    return rows
