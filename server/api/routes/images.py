from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from server.api.deps import DB, Config, Id, Reader, Trainer
from server.api.openapi import errors
from server.schemas import ImagesIn, ImagesOut
from server.services import images

router = APIRouter(prefix="/api/v1", tags=["images"])


@router.post("/runs/{run_id}/images", status_code=201, responses=errors(404))
def register_images(run_id: Id, data: ImagesIn, db: DB, cfg: Config, _: Trainer) -> ImagesOut:
    found = images.register_images(db, run_id, data.images, cfg.max_image_pixels)
    return ImagesOut(images=found)


@router.get("/runs/{run_id}/images", responses=errors(404))
def list_images(run_id: Id, db: DB, _: Reader) -> ImagesOut:
    return ImagesOut(images=images.list_images(db, run_id))


@router.get("/images/{image_id}.png", responses=errors(400, 404))
def get_png(
    image_id: Id,
    db: DB,
    _: Reader,
    cx: Annotated[int | None, Query(ge=0)] = None,
    cy: Annotated[int | None, Query(ge=0)] = None,
    r: Annotated[int, Query(ge=0, le=512)] = 16,
    scale: Annotated[int, Query(ge=1, le=32)] = 1,
) -> Response:
    png = images.get_png(db, image_id)
    if cx is not None and cy is not None:
        png = images.crop_png(png, cx, cy, r, scale)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
