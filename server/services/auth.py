"""Role checks: ``admin`` may do everything, other roles only what a route lists."""

from __future__ import annotations

from collections.abc import Iterable

from server.errors import Forbidden
from server.schemas_tokens import Me

READ_ROLES = ("admin", "trainer", "annotator", "viewer")


def authorize(principal: Me, roles: Iterable[str]) -> Me:
    allowed = set(roles)
    if principal.role == "admin" or principal.role in allowed:
        return principal
    needed = ", ".join(sorted(allowed | {"admin"}))
    raise Forbidden(f"The {principal.role} role may not do this (needs one of: {needed}).")
