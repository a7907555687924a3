"""Wire contract of images (docs/api.md): registered by reference to the image store, uploaded
as a raw PNG body, or (small images, kept for old clients) as base64 inside JSON.

Pure pydantic, like ``server.schemas``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from server.schemas import ImageKey, Strict

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="lower-case hex")]
DatasetName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
MAX_SIDE = 16384  # pixels a side of any image (PNG header), declared or not
Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]


class ImageIn(Strict):
    """An image sent inside the JSON body (base64 PNG): only for small images, since the body
    limit (``ADAMCU_MAX_BODY_BYTES``, 2 MiB) applies. Stored in the ``uploads`` dataset."""

    key: ImageKey
    width: Side
    height: Side
    png_base64: str = Field(min_length=1)


class ImageRefIn(Strict):
    """An image already in the store: ``path`` (default: ``key``) inside ``dataset``, whose
    sha256 must match. Width and height are read from the PNG header (checked if given)."""

    key: ImageKey
    dataset: DatasetName
    path: ImageKey | None = None
    sha256: Sha256
    width: Side | None = None
    height: Side | None = None


class ImagesIn(Strict):
    images: list[ImageRefIn | ImageIn] = Field(min_length=1, max_length=1000)


class ImageOut(BaseModel):
    id: int
    key: str
    width: int
    height: int


class ImagesOut(BaseModel):
    images: list[ImageOut]


class UploadOut(BaseModel):
    """A streamed upload, stored: register it in a run as ``{"key", "dataset", "path",
    "sha256"}`` with these values."""

    dataset: str
    path: str
    sha256: str
    bytes: int
    width: int
    height: int
