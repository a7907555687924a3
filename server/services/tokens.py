"""API tokens: only the sha256 of a token is stored; the plaintext is shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.errors import Unauthorized
from server.models import Token
from server.schemas import Me, TokenCreated

BOOTSTRAP_ADMIN = "bootstrap-admin"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(db: Session, role: str, name: str) -> TokenCreated:
    raw = secrets.token_urlsafe(32)
    row = Token(role=role, name=name, token_hash=hash_token(raw))
    db.add(row)
    db.commit()
    return TokenCreated(id=row.id, role=role, name=name, token=raw)  # type: ignore[arg-type]


def authenticate(db: Session, raw: str | None, admin_token: str) -> Me:
    """Resolve a bearer token to its principal; the configured admin token is bootstrapped."""
    if not raw:
        raise Unauthorized()
    digest = hash_token(raw)
    row = db.execute(select(Token).where(Token.token_hash == digest)).scalar_one_or_none()
    if row is None and hmac.compare_digest(raw.encode(), admin_token.encode()):
        row = _bootstrap_admin(db, digest)
    if row is None:
        raise Unauthorized("The token is unknown.")
    return Me(id=row.id, role=row.role, name=row.name)  # type: ignore[arg-type]


def _bootstrap_admin(db: Session, digest: str) -> Token:
    row = Token(role="admin", name=BOOTSTRAP_ADMIN, token_hash=digest)
    db.add(row)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        row = db.execute(select(Token).where(Token.token_hash == digest)).scalar_one()
    return row
