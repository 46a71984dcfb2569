"""Clients' API keys: made at random, stored as hashes, listed, revoked; keyword-only queries."""

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from leafwatch.errors import ApiKeyNotFound
from leafwatch.storage.tables import ApiKey, utcnow

KEY_START = "lw_"
# "lw_" and 8 random characters: enough to tell keys apart in a listing, and 48 of the key's 256
# random bits, which leaves 208 that nobody but the holder has seen.
PREFIX_LENGTH = len(KEY_START) + 8
MAX_NAME_LENGTH = 64


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: the only time its plain text exists outside the client."""

    id: int
    name: str
    prefix: str
    key: str


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """What a process needs to know about a valid key: whose it is."""

    id: int
    name: str


def hash_key(key: str) -> str:
    """The stored form of a key: its SHA-256, in hex."""
    # One fast unsalted hash is enough, unlike for passwords: a key is 32 random bytes, so there
    # is no dictionary to try and 2**256 keys to search, and a salt would only slow the lookup.
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def create_key(session: Session, *, name: str) -> NewKey:
    """Make a key for the client `name`, store its hash, and return it (shown once, never kept)."""
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise ValueError(f"a key name is 1 to {MAX_NAME_LENGTH} printable characters: {name!r}")
    key = KEY_START + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=key[:PREFIX_LENGTH], key_hash=hash_key(key))
    session.add(row)
    session.commit()
    return NewKey(id=row.id, name=row.name, prefix=row.prefix, key=key)


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_key(session: Session, *, key_id: int) -> ApiKey:
    """Revoke a key (a second revocation keeps the first one's time); raises ApiKeyNotFound."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise ApiKeyNotFound(f"no API key has the id {key_id}; `leafwatch keys list` shows them")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def active_keys(session: Session) -> dict[str, ActiveKey]:
    """The keys not revoked, by hash."""
    rows = session.execute(
        select(ApiKey.key_hash, ApiKey.id, ApiKey.name).where(ApiKey.revoked_at.is_(None))
    )
    return {key_hash: ActiveKey(id=key_id, name=name) for key_hash, key_id, name in rows}


def record_use(session: Session, *, used: Mapping[int, datetime]) -> None:
    """Move each key's `last_used_at` forward to when it was last seen (never backwards)."""
    for key_id, moment in used.items():
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < moment))
            .values(last_used_at=moment)
        )
    session.commit()
