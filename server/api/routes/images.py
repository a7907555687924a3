from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from server.api.deps import DB, Config, Id, Reader, Storage, Trainer
from server.api.openapi import errors
from server.schemas_images import ImagesIn, ImagesOut
from server.services import images
from server.store.base import CHUNK

router = APIRouter(prefix="/api/v1", tags=["images"])
CACHE = {"Cache-Control": "private, max-age=3600"}


@router.post("/runs/{run_id}/images", status_code=201, responses=errors(404))
def register_images(
    run_id: Id, data: ImagesIn, db: DB, cfg: Config, store: Storage, _: Trainer
) -> ImagesOut:
    found = images.register_images(db, store, run_id, data.images, cfg.max_image_pixels)
    return ImagesOut(images=found)


@router.get("/runs/{run_id}/images", responses=errors(404))
def list_images(run_id: Id, db: DB, _: Reader) -> ImagesOut:
    return ImagesOut(images=images.list_images(db, run_id))


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    with f:
        yield from iter(lambda: f.read(CHUNK), b"")


class Crop(BaseModel):
    """The query of a crop: its centre (``cx``, ``cy``), half-side ``r`` and ``scale``."""

    cx: int | None = Field(None, ge=0)
    cy: int | None = Field(None, ge=0)
    r: int = Field(16, ge=0, le=512)
    scale: int = Field(1, ge=1, le=32)


@router.get("/images/{image_id}.png", responses=errors(400, 404))
def get_png(
    request: Request,
    image_id: Id,
    db: DB,
    store: Storage,
    _: Reader,
    crop: Annotated[Crop, Query()],
) -> Response:
    """The stored PNG as it is (streamed from the store), or with ``cx`` and ``cy`` a crop."""
    blob = images.stored_file(db, image_id)
    cx, cy, r, scale = crop.cx, crop.cy, crop.r, crop.scale
    if cx is not None and cy is not None:
        png = images.crop_png(store, request.app.state.crops, blob, cx, cy, r, scale)
        return Response(png, media_type="image/png", headers=CACHE)
    handle = store.open(blob.dataset, blob.path)  # 404 here, before the response starts
    headers = {**CACHE, "Content-Length": str(blob.bytes)}
    return StreamingResponse(_chunks(handle), media_type="image/png", headers=headers)
