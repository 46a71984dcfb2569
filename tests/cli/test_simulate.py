"""`leafwatch simulate`: refusals before any work, and a short run against a real LeafWatch."""

import json
from pathlib import Path

from typer.testing import CliRunner

from leafwatch.app import create_app
from leafwatch.cli import app
from leafwatch.config import Settings
from tests.servers import uvicorn_thread

runner = CliRunner()


def test_an_unknown_scenario_is_refused_with_the_known_ones() -> None:
    result = runner.invoke(app, ["simulate", "--scenario", "flood"])
    assert result.exit_code == 1
    assert "unknown scenario 'flood'; one of baseline, latency" in result.output


def test_a_rate_that_is_not_one_is_refused() -> None:
    result = runner.invoke(app, ["simulate", "--scenario", "baseline", "--rate", "fast"])
    assert result.exit_code == 1
    assert "--rate: not a rate: 'fast'" in result.output


def test_an_outage_without_the_process_id_is_refused_before_rendering() -> None:
    result = runner.invoke(app, ["simulate", "--scenario", "outage", "--admin-token-file", "/x"])
    assert result.exit_code == 1
    assert "cannot read /x" in result.output
    result = runner.invoke(app, ["simulate", "--scenario", "outage"])
    assert result.exit_code == 1
    assert "pass --pid" in result.output
    assert "rendering" not in result.output


def test_a_short_baseline_reports_no_alert_and_writes_its_report(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", migrate_on_start=True)
    report = tmp_path / "report.json"
    with uvicorn_thread(create_app(settings)) as url:
        result = runner.invoke(
            app,
            [
                "simulate",
                "--scenario",
                "baseline",
                "--url",
                url,
                "--duration",
                "3",
                "--rate",
                "10/s",
                "--pool-size",
                "1",
                "--report",
                str(report),
                "--check",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "traffic per phase" in result.output
    written = json.loads(report.read_text())
    assert written["scenario"] == "baseline"
    assert written["speed"] == 600  # 30 minutes in 3 seconds
    assert written["detections"] == []
    assert written["traffic"]["0"]["answered"] > 10
    assert report.with_suffix(".md").read_text().startswith("| phase | alert | outcome |")
