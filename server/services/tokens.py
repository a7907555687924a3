"""API tokens: only the sha256 of a token is stored; the plaintext is shown once.

A token may expire (``expires_at``) and an admin may revoke it (``revoked_at``); neither
deletes the row (answers name their annotator by it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from server.db import begin_write
from server.errors import BadScope, NotFound, ReservedName, Unauthorized
from server.models import Run, Token, utcnow
from server.schemas_tokens import Me, TokenCreated, TokenOut

BOOTSTRAP_ADMIN = "bootstrap-admin"
TOKEN_PREFIX = "adamcu_"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(
    db: Session,
    role: str,
    name: str,
    expires_in_s: int | None = None,
    now: datetime | None = None,
    run_ids: list[int] | None = None,
) -> TokenCreated:
    """A new token, shown once; ``run_ids``: the runs it is scoped to (None: every run)."""
    if name == BOOTSTRAP_ADMIN:  # start-up revokes such rows of secrets no longer configured
        raise ReservedName(
            f"The name {BOOTSTRAP_ADMIN!r} is the configured secret's; pick another."
        )
    if run_ids is not None:
        run_ids = _scope(db, role, run_ids)
    # A fixed prefix: a bare urlsafe token starts with "-" one time in 64, and
    # ``--token -abc`` then reads as an option on every command line.
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = now or utcnow()
    expires = now + timedelta(seconds=expires_in_s) if expires_in_s is not None else None
    row = Token(
        role=role,
        name=name,
        token_hash=hash_token(raw),
        created_at=now,
        expires_at=expires,
        run_ids=run_ids,
    )
    db.add(row)
    db.commit()
    return TokenCreated(
        id=row.id,
        role=role,  # type: ignore[arg-type]
        name=name,
        token=raw,
        expires_at=expires,
        run_ids=run_ids,
    )


def _scope(db: Session, role: str, run_ids: list[int]) -> list[int]:
    """The runs of a scoped token, sorted and once each; an admin's token is never scoped
    and every run must exist (422 ``bad_scope``)."""
    if role == "admin":
        raise BadScope("An admin token sees every run; leave run_ids out.")
    wanted = sorted(set(run_ids))
    found = set(db.execute(select(Run.id).where(Run.id.in_(wanted))).scalars())
    missing = [r for r in wanted if r not in found]
    if missing:
        raise BadScope(f"Run {missing[0]} does not exist; a token is scoped to existing runs.")
    return wanted


def _out(row: Any) -> TokenOut:
    return TokenOut(
        id=row.id,
        role=row.role,
        name=row.name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        run_ids=row.run_ids,
    )


def list_tokens(db: Session) -> list[TokenOut]:
    return [_out(t) for t in db.execute(select(Token).order_by(Token.id)).scalars()]


def revoke_token(db: Session, token_id: int, now: datetime, cache: PrincipalCache) -> TokenOut:
    """Revoke a token (idempotent: a revoked token keeps its first revocation time). This
    process forgets it at once; other worker processes within their cache's TTL."""
    db.execute(
        update(Token)
        .where(Token.id == token_id, Token.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    row = db.get(Token, token_id)
    if row is None:
        db.rollback()
        raise NotFound(f"Token {token_id} does not exist.")
    db.commit()
    cache.drop(row.token_hash)
    return _out(row)


class PrincipalCache:
    """Token digest -> principal, per process, for ``ttl`` seconds (least recently used out).

    A revoked token leaves this process's cache at once and other processes' within ``ttl``
    seconds; an expiring token is never served past its ``expires_at`` (``wall``: the app's
    clock). Unknown tokens are not cached (every try asks the database).
    """

    def __init__(
        self,
        ttl: float = 30.0,
        size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self.ttl, self.size, self.clock, self.wall = ttl, size, clock, wall
        self._items: OrderedDict[str, tuple[float, datetime | None, Me]] = OrderedDict()

    def get(self, digest: str) -> Me | None:
        hit = self._items.get(digest)
        if hit is None or hit[0] < self.clock():
            return None
        if hit[1] is not None and hit[1] <= self.wall():
            self.drop(digest)
            return None
        return hit[2]

    def put(self, digest: str, me: Me, expires_at: datetime | None = None) -> None:
        self._items[digest] = (self.clock() + self.ttl, expires_at, me)
        self._items.move_to_end(digest)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def drop(self, digest: str) -> None:
        self._items.pop(digest, None)


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
    cols = select(
        Token.id, Token.role, Token.name, Token.expires_at, Token.revoked_at, Token.run_ids
    )
    row: Any = db.execute(cols.where(Token.token_hash == digest)).one_or_none()
    db.rollback()  # end the read here: the endpoint runs in another thread, maybe much later
    if row is None and hmac.compare_digest(raw.encode(), admin_token.encode()):
        row = _bootstrap_admin(db, digest)
    if row is None:
        raise Unauthorized("The token is unknown.")
    if row.revoked_at is not None:
        raise Unauthorized("The token was revoked; ask an admin for a new one.")
    if row.expires_at is not None and row.expires_at <= cache.wall():
        raise Unauthorized("The token expired; ask an admin for a new one.")
    me = Me(id=row.id, role=row.role, name=row.name, run_ids=row.run_ids)
    cache.put(digest, me, row.expires_at)
    return me


def retire_old_bootstrap_secrets(
    make_session: sessionmaker[Session], admin_token: str, now: datetime
) -> list[int]:
    """At start-up: revoke every live ``bootstrap-admin`` row but the one of the configured
    ``ADAMCU_ADMIN_TOKEN``, so a rotated-out secret stops working when the server starts with
    the new one (the rows stay, as every token row does: answers name their annotator by it).
    A retired secret never comes back to life: configured again, it is refused as revoked.
    Returns the ids revoked."""
    with make_session() as db:
        stmt = (
            update(Token)
            .where(
                Token.name == BOOTSTRAP_ADMIN,
                Token.role == "admin",
                Token.revoked_at.is_(None),
                Token.token_hash != hash_token(admin_token),
            )
            .values(revoked_at=now)
            .returning(Token.id)
            .execution_options(synchronize_session=False)
        )
        ids = list(db.execute(stmt).scalars())
        db.commit()
    return ids


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
