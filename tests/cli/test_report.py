"""`leafwatch report` prints the analytics figures as tables, read from the configured database."""

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from leafwatch.cli.report import report
from leafwatch.storage import db
from tests.storage.test_usage import seed_usage

runner = CliRunner()
# The lead registers the command in cli/main.py; until then, a one-command app runs it alike.
app = typer.Typer()
app.command()(report)


@pytest.fixture
def configured(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LEAFWATCH_VAR_DIR", str(tmp_path / "cli-var"))
    monkeypatch.setenv("LEAFWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "160")  # wide enough that no table wraps its cells
    return database_url


def row(output: str, *cells: str) -> bool:
    """Whether some table row holds these cells in this order, side by side."""
    pattern = r"\s*[│|]\s*".join(re.escape(cell) for cell in cells)
    return re.search(pattern, output) is not None


def test_report_prints_usage_retention_and_quality(configured: str) -> None:
    engine = db.make_engine(configured)
    db.upgrade(engine)
    with db.make_sessionmaker(engine)() as session:
        seed_usage(session)
    engine.dispose()
    result = runner.invoke(app, ["--from", "2026-03-01", "--to", "2026-03-10"])
    assert result.exit_code == 0, result.output
    output = result.output
    assert "from 2026-03-01 00:00 to 2026-03-11 00:00 UTC" in output
    assert row(output, "predictions", "10")
    assert row(output, "active users, last 7 days (WAU)", "3")
    assert row(output, "feedback rate", "20.0%")
    assert row(output, "2026-03-02", "3", "3", "1", "2")  # day: predictions, active, new, returning
    assert row(output, "2026-03-01", "1", "0", "0", "2", "0", "0", "0")  # classes of 1 March
    assert row(output, "08", "3", "#" * 30)  # the peak hour
    assert row(output, "Kisumu", "3", "3")
    assert row(output, "2026-03-01", "2", "1", "50.0%", "1", "50.0%")  # the first cohort
    assert "D1 66.7% of 3 users, D7 66.7% of 3 users" in output
    # Version 1: three verdicts, all right (as /analytics/quality, every verdict known counts).
    assert row(output, "1", "10", "3", "100.0%", "43.8% to 100.0%")


def test_report_on_an_empty_database_and_bad_periods(configured: str) -> None:
    engine = db.make_engine(configured)
    db.upgrade(engine)
    engine.dispose()
    result = runner.invoke(app, [])
    assert result.exit_code == 0, result.output
    assert row(result.output, "predictions", "0")
    assert row(result.output, "feedback rate", "-")
    refused = runner.invoke(app, ["--from", "2026-03-10", "--to", "2026-03-01"])
    assert refused.exit_code == 2
    assert "must be before" in refused.output
    unreadable = runner.invoke(app, ["--to", "soon"])
    assert unreadable.exit_code == 2
    assert "to='soon' is not an ISO 8601" in unreadable.output
