from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from server.api.deps import DB, Id, Reader
from server.api.openapi import errors
from server.services import export, masks

router = APIRouter(prefix="/api/v1/runs/{run_id}/export", tags=["export"])


@router.get("", responses=errors(404))
def export_answers(
    run_id: Id, db: DB, _: Reader, format: Annotated[Literal["json", "csv"], Query()] = "json"
) -> Response:
    rows = export.answer_rows(db, run_id)
    if format == "csv":
        return Response(export.to_csv(rows), media_type="text/csv")
    return JSONResponse({"answers": rows})


@router.get(
    "/masks.zip",
    response_class=StreamingResponse,
    responses={**errors(404), 200: {"content": {"application/zip": {}}}},
)
def export_masks(run_id: Id, request: Request, db: DB, _: Reader) -> StreamingResponse:
    """The masks zip, written while it is sent (server memory: one mask at a time)."""
    what = masks.plan(db, run_id)
    db.close()  # the stream reads each mask's answers in a short session of its own
    stream = masks.zip_stream(request.app.state.sessionmaker, what)
    headers = {"Content-Disposition": f'attachment; filename="run-{run_id}-masks.zip"'}
    return StreamingResponse(stream, media_type="application/zip", headers=headers)
