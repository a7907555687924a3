from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from server.api.deps import DB, Admin, Id, Now, Reader
from server.api.openapi import errors
from server.schemas_reports import HealthOut
from server.schemas_tokens import Me, TokenCreated, TokenIn, TokenOut, TokensOut
from server.services import tokens

router = APIRouter(tags=["system"])


@router.get("/health")
def health() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/ready",
    responses={503: {"description": "The database or the queue is unreachable (same body)"}},
)
def ready(request: Request) -> JSONResponse:
    try:
        with request.app.state.sessionmaker() as db:
            db.execute(text("SELECT 1"))
        database = "ok"
    except SQLAlchemyError:
        database = "unavailable"
    queue = "ok" if request.app.state.queue.ping() else "unavailable"
    good = database == "ok" and queue == "ok"
    body = {"status": "ready" if good else "unavailable", "database": database, "queue": queue}
    return JSONResponse(body, status_code=200 if good else status.HTTP_503_SERVICE_UNAVAILABLE)


@router.post("/api/v1/tokens", status_code=201)
def create_token(data: TokenIn, db: DB, now: Now, _: Admin) -> TokenCreated:
    return tokens.create_token(db, data.role, data.name, data.expires_in_seconds, now, data.run_ids)


@router.get("/api/v1/tokens")
def list_tokens(db: DB, _: Admin) -> TokensOut:
    return TokensOut(tokens=tokens.list_tokens(db))


@router.delete("/api/v1/tokens/{token_id}", responses=errors(404))
def revoke_token(token_id: Id, request: Request, db: DB, now: Now, _: Admin) -> TokenOut:
    return tokens.revoke_token(db, token_id, now, request.app.state.principals)


@router.get("/api/v1/me")
def me(principal: Reader) -> Me:
    return principal
