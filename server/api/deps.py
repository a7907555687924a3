"""Request dependencies: DB session, dispatcher, clock, settings and role checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from server.db import get_db
from server.queue import Dispatcher
from server.schemas import INT32_MAX, Me
from server.services.auth import authorize
from server.services.tokens import authenticate
from server.settings import Settings

DB = Annotated[Session, Depends(get_db)]


def get_queue(request: Request) -> Dispatcher:
    return request.app.state.queue


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_now(request: Request) -> datetime:
    return request.app.state.clock()


# a path id beyond the 32-bit id columns is refused (422) before it reaches the database
Id = Annotated[int, Path(ge=0, le=INT32_MAX)]
Cursor = Annotated[int, Query(ge=0, le=INT32_MAX)]
Queue = Annotated[Dispatcher, Depends(get_queue)]
Config = Annotated[Settings, Depends(get_settings)]
Now = Annotated[datetime, Depends(get_now)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token")


def get_principal(request: Request, db: DB, settings: Config) -> Me:
    cache = request.app.state.principals  # a per-process TTL cache of token -> principal
    return authenticate(db, _bearer(request), settings.admin_token, cache)


def require(*roles: str) -> Callable[..., Me]:
    """Dependency: the caller's principal, if its role is one of ``roles`` (or admin)."""

    def check(principal: Annotated[Me, Depends(get_principal)]) -> Me:
        return authorize(principal, roles)

    return check


READ = ("trainer", "annotator", "viewer")
Reader = Annotated[Me, Depends(require(*READ))]
Trainer = Annotated[Me, Depends(require("trainer"))]
Annotator = Annotated[Me, Depends(require("annotator"))]
Admin = Annotated[Me, Depends(require())]
AnswerReader = Annotated[Me, Depends(require("trainer", "viewer"))]
