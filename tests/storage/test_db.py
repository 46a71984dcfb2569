"""Migrations build exactly the tables the code declares, on SQLite and PostgreSQL."""

import ast
import threading
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select

from leafwatch.storage import db
from leafwatch.storage.tables import Base, ModelVersion


def test_migrations_match_the_declared_tables(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        assert db.current_revision(engine) is None
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        indexes = {index["name"] for index in inspect(engine).get_indexes("predictions")}
        assert {
            "ix_predictions_timestamp",
            "ix_predictions_user_id_timestamp",
            "ix_predictions_model_version_timestamp",
        } <= indexes
        db.upgrade(engine)  # applying again is a no-op
    finally:
        engine.dispose()


def test_concurrent_upgrades_take_turns(database_url: str) -> None:
    # Several workers start at once and each migrates: none may fail on a half-made schema.
    engines = [db.make_engine(database_url) for _ in range(4)]
    errors: list[BaseException] = []

    def migrate(engine: Engine) -> None:
        try:
            db.upgrade(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert db.current_revision(engines[0]) == db.head_revision()
    finally:
        for engine in engines:
            engine.dispose()


def test_timestamps_come_back_as_the_same_utc_instant(database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    nairobi = datetime(2026, 3, 1, 15, 30, 0, 123456, tzinfo=timezone(timedelta(hours=3)))
    try:
        with sessions() as session:
            session.add(
                ModelVersion(
                    model_name="m",
                    version="1",
                    onnx_sha256="0" * 64,
                    card={"a": [1, 2]},
                    first_served_at=nairobi,
                    last_served_at=nairobi,
                )
            )
            session.commit()
        with sessions() as session:
            row = session.scalars(select(ModelVersion)).one()
            assert row.first_served_at == nairobi
            assert row.first_served_at.tzinfo is not None
            assert row.first_served_at.utcoffset() == timedelta(0)
            assert row.card == {"a": [1, 2]}
    finally:
        engine.dispose()


def test_naive_timestamps_are_refused(database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    try:
        with db.make_sessionmaker(engine)() as session:
            naive = datetime(2026, 1, 1)
            session.add(
                ModelVersion(
                    model_name="m",
                    version="1",
                    onnx_sha256="0",
                    card={},
                    first_served_at=naive,
                    last_served_at=datetime.now(UTC),
                )
            )
            with pytest.raises(Exception, match="naive datetime"):
                session.commit()
    finally:
        engine.dispose()


def test_ping_tells_a_dead_database(tmp_path: object) -> None:
    engine = db.make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    assert db.ping(engine) is False


def test_every_migration_only_adds_so_the_previous_release_runs_on_the_new_schema() -> None:
    # /ready keeps a pod of the previous release serving on a schema newer than its own during a
    # rolling upgrade; that is safe only while upgrades add. A removal or change belongs in a
    # later release than the one that stops using the column or table.
    versions = resources.files("leafwatch.storage") / "migrations" / "versions"
    changing = ("drop_", "alter_column", "rename_table", "batch_alter_table", "execute")
    found = {}
    for script in sorted(p for p in versions.iterdir() if p.name.endswith(".py")):
        tree = ast.parse(script.read_text())
        (upgrade,) = [
            n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"
        ]
        calls = [
            node.func.attr
            for node in ast.walk(upgrade)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        ]
        found[script.name] = [call for call in calls if call.startswith(changing)]
    assert len(found) >= 7
    assert {name: calls for name, calls in found.items() if calls} == {}


def test_a_server_database_pools_as_many_connections_as_the_settings_say(
    postgres_database: str,
) -> None:
    engine = db.make_engine(postgres_database, pool_size=3, max_overflow=2)
    try:
        connections = [engine.connect() for _ in range(5)]
        assert (engine.pool.size(), engine.pool.overflow()) == (3, 2)
        for connection in connections:
            connection.close()
        assert engine.pool.checkedin() == 3  # the overflow closed
    finally:
        engine.dispose()
