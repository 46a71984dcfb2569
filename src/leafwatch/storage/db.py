"""Database engine, sessions and migrations."""

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """Create an engine; for SQLite, create the file's folder and enable WAL and foreign keys.

    A server database gets a pool of `pool_size` connections kept open and up to `max_overflow`
    more under load, per process.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # A database that is away must fail a request fast, not hold it for the TCP timeouts
        # (the request then goes to the spool): a bounded connect, and a connection whose sent
        # data stays unacknowledged for 10 s counts as broken. The URL's own values win.
        limits = {"connect_timeout": 5, "tcp_user_timeout": 10_000}
        for name in parsed.query:
            limits.pop(name, None)
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_args=limits,
        )
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers and the writer work at once; several workers share the file.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    """Alembic's configuration pointing at the packaged migrations and the given engine."""
    config = alembic_config_for_url(engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision`; concurrent callers (workers, replicas) take turns."""
    with migration_lock(engine):
        command.upgrade(alembic_config(engine), revision)


# Any fixed 64-bit number, the same in every LeafWatch process: "LeafWatch migrations".
_PG_MIGRATION_LOCK = 0x4C574D4947524154


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Hold a lock that only one process migrating this database can have at a time."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            try:
                yield
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
                connection.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@cache
def head_revision() -> str:
    """The newest revision the packaged migrations know (read once: they ship with the code)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config_for_url("sqlite://")).get_current_head()
    assert head is not None
    return head


@cache
def known_revisions() -> frozenset[str]:
    """Every revision the packaged migrations know, the head included."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config_for_url("sqlite://"))
    return frozenset(script.revision for script in scripts.walk_revisions())


def schema_state(revision: str | None) -> Literal["current", "behind", "ahead"]:
    """Where a database's revision stands against this release's migrations.

    A revision this release does not know was written by a newer one: during a rolling upgrade the
    migration runs before every old process has stopped, and migrations add before they remove, so
    an old process keeps serving on the newer schema.
    """
    if revision == head_revision():
        return "current"
    if revision is None or revision in known_revisions():
        return "behind"
    return "ahead"


def alembic_config_for_url(url: str) -> Config:
    """Alembic's configuration for a URL, without an engine."""
    config = Config()
    location = resources.files("leafwatch.storage") / "migrations"
    config.set_main_option("script_location", str(location))
    config.set_main_option("sqlalchemy.url", url)
    return config


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None when it has none."""
    with engine.connect() as connection:
        try:
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
        except Exception:  # no alembic_version table: an empty database
            return None
    return None if row is None else str(row[0])


def ping(engine: Engine) -> bool:
    """Whether the database answers a trivial query."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True
