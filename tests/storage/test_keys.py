"""API keys in the database: only hashes stored, revocation, last use, on SQLite and PostgreSQL."""

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from leafwatch.errors import ApiKeyNotFound
from leafwatch.storage import db, keys
from leafwatch.storage.tables import ApiKey, utcnow


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with db.make_sessionmaker(engine)() as session:
        yield session
    engine.dispose()


def test_a_new_key_is_random_and_only_its_hash_is_stored(session: Session) -> None:
    first = keys.create_key(session, name="mobile-app")
    second = keys.create_key(session, name="mobile-app")
    assert first.key != second.key
    assert first.key.startswith("lw_")
    assert len(first.key) == 46
    assert first.prefix == first.key[: keys.PREFIX_LENGTH]
    stored = "\n".join(
        str(value) for row in session.execute(text("SELECT * FROM api_keys")).all() for value in row
    )
    assert first.key not in stored
    assert second.key not in stored
    assert keys.hash_key(first.key) in stored
    assert first.key[keys.PREFIX_LENGTH :] not in stored


def test_active_keys_are_found_by_hash_until_revoked(session: Session) -> None:
    kept = keys.create_key(session, name="web")
    gone = keys.create_key(session, name="old-app")
    revoked = keys.revoke_key(session, key_id=gone.id)
    assert revoked.revoked_at is not None
    active = keys.active_keys(session)
    assert active == {keys.hash_key(kept.key): keys.ActiveKey(id=kept.id, name="web")}
    again = keys.revoke_key(session, key_id=gone.id)
    assert again.revoked_at == revoked.revoked_at  # revoking twice keeps the first time
    assert [row.name for row in keys.list_keys(session)] == ["web", "old-app"]


def test_revoking_an_unknown_key_says_so(session: Session) -> None:
    with pytest.raises(ApiKeyNotFound, match="no API key has the id 999"):
        keys.revoke_key(session, key_id=999)


@pytest.mark.parametrize("name", ["", "x" * 65, "line\nbreak"])
def test_a_key_name_must_be_short_printable_text(session: Session, name: str) -> None:
    with pytest.raises(ValueError, match="key name"):
        keys.create_key(session, name=name)


def test_last_use_only_moves_forward(session: Session) -> None:
    new = keys.create_key(session, name="web")
    later, earlier = utcnow(), utcnow() - timedelta(hours=1)
    keys.record_use(session, used={new.id: later})
    keys.record_use(session, used={new.id: earlier})  # a worker that saw it before another
    session.expire_all()
    row = session.scalars(select(ApiKey)).one()
    assert row.last_used_at == later
