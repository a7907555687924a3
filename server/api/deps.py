"""Request dependencies: DB session, dispatcher, clock, settings and role checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, BeforeValidator
from sqlalchemy.orm import Session

from server.db import get_db
from server.errors import Unauthorized
from server.queue import Dispatcher
from server.schemas import INT32_MAX
from server.schemas_tokens import Me
from server.services.auth import authorize, owner_in_scope, run_in_scope
from server.services.tokens import PrincipalCache, authenticate, cached_principal
from server.settings import Settings
from server.store import Store
from server.wakeups import Wakeups

DB = Annotated[Session, Depends(get_db)]


async def get_queue(request: Request) -> Dispatcher:
    return request.app.state.queue


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_now(request: Request) -> datetime:
    return request.app.state.clock()


async def get_wakeups(request: Request) -> Wakeups:
    return request.app.state.wakeups


def _digits(value: object) -> object:
    """An id in a path or a cursor is plain decimal digits: not ``+1``, `` 1`` or ``0_1``
    (which int() would read as 1)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("an id is plain decimal digits")
    return value


# a path id beyond the 32-bit id columns is refused (422) before it reaches the database
Id = Annotated[int, BeforeValidator(_digits), Path(ge=0, le=INT32_MAX)]
Cursor = Annotated[int, BeforeValidator(_digits), Query(ge=0, le=INT32_MAX)]
Queue = Annotated[Dispatcher, Depends(get_queue)]
Config = Annotated[Settings, Depends(get_settings)]
Now = Annotated[datetime, Depends(get_now)]
Storage = Annotated[Store, Depends(get_store)]
Waiting = Annotated[Wakeups, Depends(get_wakeups)]


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as a JSON response, serialised here (see the hot routes in queries.py)."""
    return Response(model.model_dump_json(), status_code, media_type="application/json")


def _bearer(request: Request) -> str | None:
    if len(request.headers.getlist("authorization")) > 1:  # which one counts is ambiguous
        raise Unauthorized("Send one Authorization header, not several.")
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if "token" in request.query_params:  # would end up in access logs and browser history
        raise Unauthorized(
            "Send the token in the Authorization header; ?token= only opens the web pages."
        )
    return None


# Declares the scheme in /openapi.json (the Authorize button of /docs); ``_bearer`` still
# reads the header itself, so a missing or odd header is the envelope's 401 as before.
BEARER = HTTPBearer(auto_error=False, description="A token from POST /api/v1/tokens")


async def get_principal(
    request: Request,
    db: DB,
    settings: Config,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)] = None,
) -> Me:
    """The caller's principal: from the per-process TTL cache on the event loop, else looked
    up in the database in a worker thread (the cheap dependencies of this module are
    ``async def`` so that only the endpoint itself runs in the thread pool)."""
    cache: PrincipalCache = request.app.state.principals
    raw = _bearer(request)
    digest, me = cached_principal(raw, cache)
    if me is not None:
        return me
    return await run_in_threadpool(authenticate, db, raw, digest, settings.admin_token, cache)


def require(*roles: str) -> Callable[..., Me]:
    """Dependency: the caller's principal, if its role is one of ``roles`` (or admin), and
    if the token is scoped to runs, one of them is the run the path names (else 404)."""

    async def check(request: Request, principal: Annotated[Me, Depends(get_principal)]) -> Me:
        me = authorize(principal, roles)
        if me.run_ids is None:  # unscoped tokens (the most) pay nothing
            return me
        path = request.path_params
        run_in_scope(me, path)
        if "query_id" in path or "image_id" in path:
            await run_in_threadpool(owner_in_scope, request.app.state.sessionmaker, me, path)
        return me

    check.roles = roles  # type: ignore[attr-defined]  # read by server/api/openapi.py
    return check


READ = ("trainer", "annotator", "viewer")
Reader = Annotated[Me, Depends(require(*READ))]
Trainer = Annotated[Me, Depends(require("trainer"))]
Annotator = Annotated[Me, Depends(require("annotator"))]
Admin = Annotated[Me, Depends(require())]
AnswerReader = Annotated[Me, Depends(require("trainer", "viewer"))]
