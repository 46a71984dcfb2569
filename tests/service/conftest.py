"""Fixtures of the recorder and replay tests: a database that answers, one that refuses, a spool."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from leafwatch.stack import free_port
from leafwatch.storage import db
from leafwatch.storage.spool import Spool


@pytest.fixture
def live(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a migrated database that answers."""
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield db.make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def dead_engine() -> Iterator[Engine]:
    """An engine on a PostgreSQL port where nothing listens: every connection is refused."""
    engine = db.make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    yield engine
    engine.dispose()


@pytest.fixture
def dead(dead_engine: Engine) -> sessionmaker[Session]:
    return db.make_sessionmaker(dead_engine)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    spool = Spool(tmp_path / "spool")
    yield spool
    spool.close()
