"""Wire contract of the admin's tokens and of the caller (``Me``, the principal of a request).

Pure pydantic, like ``server.schemas``. Only the server imports it: the client's calls return
the JSON as dicts.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from server.schemas import DbInt, Name, Role, Strict

MAX_TOKEN_LIFETIME_S = 10 * 365 * 86400
MAX_TOKEN_RUNS = 1000


class TokenIn(Strict):
    role: Role
    name: Name
    # None: the token never expires (it can still be revoked)
    expires_in_seconds: int | None = Field(default=None, ge=60, le=MAX_TOKEN_LIFETIME_S)
    # None: every run (as before scopes existed); a list: only these runs (not for admins)
    run_ids: list[DbInt] | None = Field(default=None, min_length=1, max_length=MAX_TOKEN_RUNS)


class Me(BaseModel):
    id: int
    role: Role
    name: str
    run_ids: list[int] | None = None  # the runs this token is scoped to; None: every run

    def sees(self, run_id: int) -> bool:
        return self.run_ids is None or run_id in self.run_ids


class TokenCreated(Me):
    token: str
    expires_at: datetime | None = None


class TokenOut(Me):
    """A token as the admin lists it: never its secret (only a hash is stored)."""

    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokensOut(BaseModel):
    tokens: list[TokenOut]
