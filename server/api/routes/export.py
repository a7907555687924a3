from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from server.api.deps import DB, Id, Reader
from server.api.openapi import errors
from server.services import export

router = APIRouter(prefix="/api/v1/runs/{run_id}/export", tags=["export"])


@router.get("", responses=errors(404))
def export_answers(
    run_id: Id, db: DB, _: Reader, format: Annotated[Literal["json", "csv"], Query()] = "json"
) -> Response:
    rows = export.answer_rows(db, run_id)
    if format == "csv":
        return Response(export.to_csv(rows), media_type="text/csv")
    return JSONResponse({"answers": rows})


@router.get("/masks.zip", responses=errors(404))
def export_masks(run_id: Id, db: DB, _: Reader) -> Response:
    data = export.masks_zip(db, run_id)
    headers = {"Content-Disposition": f'attachment; filename="run-{run_id}-masks.zip"'}
    return Response(data, media_type="application/zip", headers=headers)
