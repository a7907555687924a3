"""``POST /api/v1/uploads``: a PNG as the raw request body, streamed into the image store."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.api.deps import DB, Config, Storage, Trainer
from server.api.openapi import errors
from server.schemas_images import UploadOut
from server.services.store import FileFacts, blob_rows, finish_upload, receive_upload
from server.store import Store

router = APIRouter(prefix="/api/v1", tags=["images"])
BODY = {
    "requestBody": {
        "required": True,
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _store_and_record(db: Session, store: Store, local, max_pixels: int) -> FileFacts:  # noqa: ANN001
    facts = finish_upload(store, local, max_pixels)
    try:
        blob_rows(db, [facts])
        db.commit()
    except IntegrityError:  # the same content, uploaded at the same moment
        db.rollback()
    return facts


@router.post(
    "/uploads", status_code=201, responses=errors(401, 403, 413, 415, 422), openapi_extra=BODY
)
async def upload(request: Request, db: DB, cfg: Config, store: Storage, _: Trainer) -> UploadOut:
    """Store one PNG (``Content-Type: image/png``, at most ``ADAMCU_MAX_UPLOAD_BYTES``), hashed
    while it streams in; it lands in dataset ``uploads`` at a path named by its sha256, so the
    same image uploaded twice is stored once. Register it in a run with
    ``POST /runs/{id}/images`` ``{"key", "dataset", "path", "sha256"}``."""
    scratch = await run_in_threadpool(store.scratch)
    local = await receive_upload(request.stream(), scratch, cfg.max_upload_bytes)
    facts = await run_in_threadpool(_store_and_record, db, store, local, cfg.max_image_pixels)
    return UploadOut(**vars(facts))
