"""`leafwatch model rollback`: the webhook's rollback, by hand, recorded beside the alerts."""

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from leafwatch.cli import app
from leafwatch.config import Settings
from leafwatch.model.registry import LocalModelRegistry, bundled_model
from leafwatch.storage import db
from leafwatch.storage.tables import AlertEvent

runner = CliRunner()


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalModelRegistry:
    """The CLI's registry with production history 1, 2, 3."""
    monkeypatch.setenv("LEAFWATCH_VAR_DIR", str(tmp_path / "var"))
    settings = Settings()
    registry = LocalModelRegistry(settings.resolved_model_dir(), settings.model_name)
    registry.ensure_seeded()
    model_path, card = bundled_model()
    for _ in range(2):
        registry.promote(registry.register(model_path, card).version)
    return registry


def stored_events() -> list[AlertEvent]:
    engine = db.make_engine(Settings().resolved_database_url())
    try:
        with db.make_sessionmaker(engine)() as session:
            return list(session.scalars(select(AlertEvent).order_by(AlertEvent.id)))
    finally:
        engine.dispose()


def test_a_rollback_by_hand_is_recorded_as_an_alert_event(registry: LocalModelRegistry) -> None:
    rolled = runner.invoke(app, ["model", "rollback"])
    assert rolled.exit_code == 0, rolled.output
    assert "rolled back from version 3 to 2" in rolled.output
    assert registry.production().version == "2"
    [event] = stored_events()
    assert (event.source, event.action, event.from_version, event.to_version) == (
        "cli",
        "rolled_back",
        "3",
        "2",
    )
    assert event.auto_rollback_of is None, "a rollback by hand leaves the automatic one free"


def test_expect_rolls_back_only_while_that_version_is_production(
    registry: LocalModelRegistry,
) -> None:
    refused = runner.invoke(app, ["model", "rollback", "--expect", "2"])
    assert refused.exit_code == 1
    assert "production is version 3, not 2" in refused.output
    assert registry.production().version == "3"
    done = runner.invoke(app, ["model", "rollback", "--expect", "3"])
    assert done.exit_code == 0, done.output
    assert registry.production().version == "2"
    assert [event.action for event in stored_events()] == ["rolled_back"]
