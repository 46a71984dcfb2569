"""Alert events: what Alertmanager told LeafWatch and what was done; keyword-only queries."""

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from leafwatch.errors import InvalidCursor
from leafwatch.storage.tables import AlertEvent


def record_event(session: Session, **fields: Any) -> AlertEvent:
    """Store one event and commit it."""
    row = AlertEvent(**fields)
    session.add(row)
    session.commit()
    return row


def auto_rollback_of(session: Session, *, version: str) -> AlertEvent | None:
    """The event whose automatic rollback moved production off `version`, if there was one."""
    return session.scalar(select(AlertEvent).where(AlertEvent.auto_rollback_of == version))


def list_events(
    session: Session, *, limit: int, cursor: str | None
) -> tuple[list[AlertEvent], str | None]:
    """One page of events, newest first, and the cursor of the next page (None at the end)."""
    query = select(AlertEvent).order_by(AlertEvent.id.desc())
    if cursor is not None:
        query = query.where(AlertEvent.id < _decode_cursor(cursor))
    rows = list(session.scalars(query.limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], str(rows[limit - 1].id)


def _decode_cursor(cursor: str) -> int:
    # Ids only grow, so "older than this id" pages through a table that keeps growing.
    if not re.fullmatch(r"[0-9]{1,18}", cursor):
        raise InvalidCursor(f"cursor {cursor[:64]!r} was not issued by this service")
    return int(cursor)
