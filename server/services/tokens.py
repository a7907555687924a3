"""API tokens: only the sha256 of a token is stored; the plaintext is shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db import begin_write
from server.errors import Unauthorized
from server.models import Token
from server.schemas import Me, TokenCreated

BOOTSTRAP_ADMIN = "bootstrap-admin"
TOKEN_PREFIX = "adamcu_"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(db: Session, role: str, name: str) -> TokenCreated:
    # A fixed prefix: a bare urlsafe token starts with "-" one time in 64, and
    # ``--token -abc`` then reads as an option on every command line.
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = Token(role=role, name=name, token_hash=hash_token(raw))
    db.add(row)
    db.commit()
    return TokenCreated(id=row.id, role=role, name=name, token=raw)  # type: ignore[arg-type]


class PrincipalCache:
    """Token digest -> principal, per process, for ``ttl`` seconds (least recently used out).

    Tokens are never changed or revoked through the API; a row deleted by hand stops working
    within ``ttl`` seconds. Unknown tokens are not cached (every try asks the database).
    """

    def __init__(
        self, ttl: float = 30.0, size: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._items: OrderedDict[str, tuple[float, Me]] = OrderedDict()

    def get(self, digest: str) -> Me | None:
        hit = self._items.get(digest)
        if hit is None or hit[0] < self.clock():
            return None
        return hit[1]

    def put(self, digest: str, me: Me) -> None:
        self._items[digest] = (self.clock() + self.ttl, me)
        self._items.move_to_end(digest)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def cached_principal(raw: str | None, cache: PrincipalCache) -> tuple[str, Me | None]:
    """The token's digest and its principal if ``cache`` holds it (no I/O: callers on the
    event loop use this first). No token: 401."""
    if not raw:
        raise Unauthorized()
    digest = hash_token(raw)
    return digest, cache.get(digest)


def authenticate(db: Session, raw: str, digest: str, admin_token: str, cache: PrincipalCache) -> Me:
    """Resolve a token that ``cached_principal`` did not know to its principal, from the
    database (the configured admin token is bootstrapped), and remember it in ``cache``."""
    cols = select(Token.id, Token.role, Token.name)
    row: Any = db.execute(cols.where(Token.token_hash == digest)).one_or_none()
    db.rollback()  # end the read here: the endpoint runs in another thread, maybe much later
    if row is None and hmac.compare_digest(raw.encode(), admin_token.encode()):
        row = _bootstrap_admin(db, digest)
    if row is None:
        raise Unauthorized("The token is unknown.")
    me = Me(id=row.id, role=row.role, name=row.name)  # type: ignore[arg-type]
    cache.put(digest, me)
    return me


def _bootstrap_admin(db: Session, digest: str) -> Token:
    begin_write(db)
    row = Token(role="admin", name=BOOTSTRAP_ADMIN, token_hash=digest)
    db.add(row)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        row = db.execute(select(Token).where(Token.token_hash == digest)).scalar_one()
    return row
