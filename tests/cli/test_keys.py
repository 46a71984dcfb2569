"""`leafwatch keys create|list|revoke` on the configured database; the key works until revoked."""

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from leafwatch.app import create_app
from leafwatch.cli import app
from leafwatch.config import Settings
from leafwatch.storage import db

runner = CliRunner()


@pytest.fixture
def configured(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("LEAFWATCH_VAR_DIR", str(tmp_path / "cli-var"))
    monkeypatch.setenv("LEAFWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "160")  # wide enough that no table wraps its cells
    engine = db.make_engine(database_url)
    db.upgrade(engine)  # PostgreSQL is not migrated by commands (`leafwatch db upgrade` is)
    engine.dispose()
    return Settings(require_api_key=True, api_key_cache_seconds=0)


def stats(client: TestClient, key: str) -> int:
    return client.get("/api/v1/feedback/stats", headers={"X-API-Key": key}).status_code


def test_a_created_key_is_printed_once_listed_without_it_and_revoked(
    configured: Settings,
) -> None:
    created = runner.invoke(app, ["keys", "create", "mobile-app"])
    assert created.exit_code == 0, created.output
    printed = re.search(r"^lw_[A-Za-z0-9_-]{43}$", created.output, re.M)  # a line of its own
    assert printed, created.output
    key = printed.group()
    assert "API key 1 for mobile-app" in created.output

    listed = runner.invoke(app, ["keys", "list"])
    assert listed.exit_code == 0, listed.output
    assert re.search(rf"1\s*│\s*mobile-app\s*│\s*{re.escape(key[:11])}…", listed.output)
    assert key[11:] not in listed.output

    with TestClient(create_app(configured)) as client:
        assert stats(client, key) == 200
        revoked = runner.invoke(app, ["keys", "revoke", "1"])
        assert revoked.exit_code == 0, revoked.output
        assert "API key 1 of mobile-app revoked at" in revoked.output
        assert stats(client, key) == 401

    listed = runner.invoke(app, ["keys", "list"])
    row = next(line for line in listed.output.splitlines() if "mobile-app" in line)
    created_at, last_used, revoked_at = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row)
    assert created_at <= last_used <= revoked_at


def test_revoking_an_unknown_key_or_naming_a_key_badly_fails(configured: Settings) -> None:
    unknown = runner.invoke(app, ["keys", "revoke", "42"])
    assert unknown.exit_code == 1
    assert "no API key has the id 42" in unknown.output
    long_name = runner.invoke(app, ["keys", "create", "x" * 65])
    assert long_name.exit_code == 2
    assert "key name" in long_name.output
