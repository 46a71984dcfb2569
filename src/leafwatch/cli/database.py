"""The database a command works on: the settings' one, migrated first where they say so."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from leafwatch.config import Settings
from leafwatch.storage import db


@contextmanager
def database_session(settings: Settings) -> Iterator[Session]:
    """A session on the settings' database; the engine is released when the block ends."""
    engine = db.make_engine(settings.resolved_database_url())
    try:
        if settings.should_migrate_on_start():
            db.upgrade(engine)
        with db.make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()
