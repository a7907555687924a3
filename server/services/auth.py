"""Role checks: ``admin`` may do everything, other roles only what a route lists; a token
scoped to runs sees only those runs (any other is 404 to it, as if it did not exist)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.errors import Forbidden, ImageNotFound, QueryNotFound, RunNotFound
from server.models import Image, Query
from server.schemas_tokens import Me

READ_ROLES = ("admin", "trainer", "annotator", "viewer")
_INT = TypeAdapter(int)  # a path id read as the route reads it


def authorize(principal: Me, roles: Iterable[str]) -> Me:
    allowed = set(roles)
    if principal.role == "admin" or principal.role in allowed:
        return principal
    needed = ", ".join(sorted(allowed | {"admin"}))
    raise Forbidden(f"The {principal.role} role may not do this (needs one of: {needed}).")


def _path_id(path: Mapping[str, Any], name: str) -> int | None:
    try:
        return _INT.validate_python(path[name]) if name in path else None
    except ValidationError:
        return None  # the route refuses it (422) itself


def run_in_scope(me: Me, path: Mapping[str, Any]) -> None:
    """404 unless the path's ``run_id`` (if any) is one of a scoped token's runs: the same 404
    an unknown id gets, so a scoped token learns nothing of other runs. No I/O."""
    run_id = _path_id(path, "run_id")
    if run_id is not None and not me.sees(run_id):
        raise RunNotFound(f"Run {run_id} does not exist.")


def owner_in_scope(make_session: sessionmaker[Session], me: Me, path: Mapping[str, Any]) -> None:
    """404 unless the run of the path's ``query_id`` or ``image_id`` is one of a scoped
    token's runs (an unknown id is left to the route's own 404). Reads in a read session of
    its own: no write lock is taken for it."""
    for name, table, refusal, noun in (
        ("query_id", Query, QueryNotFound, "Query"),
        ("image_id", Image, ImageNotFound, "Image"),
    ):
        thing_id = _path_id(path, name)
        if thing_id is None:
            continue
        with make_session() as db:
            owner = db.execute(select(table.run_id).where(table.id == thing_id)).scalar()
        if owner is not None and not me.sees(owner):
            raise refusal(f"{noun} {thing_id} does not exist.")
