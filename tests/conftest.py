"""Shared fixtures: settings per test on SQLite and on the local PostgreSQL, a live app, images."""

import io
import logging
import os
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from structlog.typing import EventDict

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.observe.logs import configure_logging

# The local PostgreSQL that `make test` starts; override to test against another server.
PG_ADMIN_DSN = os.environ.get("LEAFWATCH_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _test_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every app a test builds logs to its own temporary file (not the checkout's logs/)."""
    monkeypatch.setenv("LEAFWATCH_LOG_FILE", str(tmp_path / "logs" / "app.log"))
    # The hourly drift run starts with each app; tests that are about it switch it back on.
    monkeypatch.setenv("LEAFWATCH_DRIFT_INTERVAL_SECONDS", "0")
    monkeypatch.setenv("LEAFWATCH_PERFORMANCE_INTERVAL_SECONDS", "0")
    monkeypatch.setenv("LEAFWATCH_ROLLUP_INTERVAL_SECONDS", "0")


@pytest.fixture
def log_events(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Callable[[], list[EventDict]]:
    """A function returning the structlog events logged so far in the test, as dicts.

    Read through the standard library, where LeafWatch's logging sends every line: structlog's
    `capture_logs` misses loggers cached before it (`cache_logger_on_first_use`).
    """
    configure_logging(Settings(var_dir=tmp_path, log_file=""))
    caplog.set_level(logging.DEBUG)
    return lambda: [record.msg for record in caplog.records if isinstance(record.msg, dict)]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"leafwatch_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_DSN} (make test starts it): {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset_postgres(url: str) -> None:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once SQLite and once PostgreSQL: the same tests run on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'leafwatch.db'}"
    url: str = request.getfixturevalue("postgres_database")
    _reset_postgres(url)
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for one test: its own var dir and database, migrations applied at start."""
    return Settings(var_dir=tmp_path / "var", database_url=database_url, migrate_on_start=True)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A started app (lifespan run) behind a test client."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def image_bytes(
    fmt: str = "JPEG", size: tuple[int, int] = (320, 240), mode: str = "RGB", **save: object
) -> bytes:
    """An image of a given format, size and mode, leaf-green where the mode has colour."""
    colours: dict[str, float | tuple[float, ...]] = {
        "RGB": (60, 140, 50),
        "RGBA": (60, 140, 50, 200),
        "CMYK": (80, 0, 90, 40),
    }
    image = Image.new(mode, size, colours.get(mode, 128))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def png_with_declared_size(width: int, height: int) -> bytes:
    """A PNG header that declares a size, followed by almost no data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
