"""Running scenarios: what can run with which options, phases ending early, clean-up."""

import asyncio
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.model.registry import LocalModelRegistry
from leafwatch.simulate.report import as_json, markdown
from leafwatch.simulate.runner import (
    Simulation,
    SimulationError,
    SimulationOptions,
    SimulationResult,
    alert_sources,
    plan,
)
from leafwatch.simulate.scenarios import Phase, Scenario, Traffic, get_scenario
from leafwatch.simulate.traffic import LeafPool
from tests.servers import uvicorn_thread

TOKEN = "runner-admin"
OPTIONS = SimulationOptions(url="http://127.0.0.1:1", admin_token=TOKEN, model_dir=Path("m"))


def test_a_scenario_that_needs_the_admin_token_says_so() -> None:
    with pytest.raises(SimulationError, match="--admin-token-file"):
        plan(get_scenario("errors"), replace(OPTIONS, admin_token=None))
    phases, skipped = plan(get_scenario("baseline"), replace(OPTIONS, admin_token=None))
    assert len(phases) == 1
    assert skipped == []


def test_the_accuracy_scenario_needs_the_served_registry() -> None:
    with pytest.raises(SimulationError, match="--model-dir"):
        plan(get_scenario("accuracy"), replace(OPTIONS, model_dir=None))


def test_an_outage_needs_the_process_id_and_the_story_goes_on_without_it() -> None:
    with pytest.raises(SimulationError, match="--pid"):
        plan(get_scenario("outage"), OPTIONS)
    story = get_scenario("story")
    phases, skipped = plan(story, OPTIONS)
    assert [phase for phase in story.phases if phase not in phases] == [
        phase for phase in story.phases if phase.outage
    ]
    assert skipped == ["outage left out: without --pid the simulator cannot stop LeafWatch"]
    assert plan(story, replace(OPTIONS, pids=(1234,)))[0] == list(story.phases)


def test_sources_are_prometheus_and_alertmanager_when_given_and_always_leafwatch() -> None:
    assert [s.name for s in alert_sources(OPTIONS)] == ["leafwatch"]
    both = replace(OPTIONS, prometheus_url="http://p", alertmanager_url="http://a")
    assert [s.name for s in alert_sources(both)] == ["prometheus", "alertmanager", "leafwatch"]


def served(tmp_path: Path, **settings: object) -> Settings:
    return Settings(
        var_dir=tmp_path / "var",
        migrate_on_start=True,
        faults_enabled=True,
        admin_token=TOKEN,
        metrics_cache_seconds=0,
        **settings,
    )


def run(scenario: Scenario, options: SimulationOptions) -> SimulationResult:
    pool = LeafPool.render(["field"], per_class=2, seed=4)
    return asyncio.run(Simulation(scenario, options, pool=pool).run())


def test_a_phase_ends_when_its_alert_fires_and_the_fault_is_cleared(tmp_path: Path) -> None:
    scenario = Scenario(
        "broken",
        "every prediction fails, then nothing does",
        (
            Phase("failing", 30, error_ratio=1.0, expect=("HighErrorRate",), until="fired"),
            Phase("calm", 1),
        ),
    )
    settings = served(tmp_path)
    with uvicorn_thread(create_app(settings)) as url:
        options = SimulationOptions(url=url, rate=10, admin_token=TOKEN, poll_seconds=0.25)
        result = run(scenario, options)
        faults = httpx.get(
            f"{url}/api/v1/admin/faults", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    failing, _calm = result.spans
    assert failing.ended - failing.started < 10, "it ended when HighErrorRate fired, not at 30 s"
    row = result.detections[0]
    assert (row.alert, row.phase.name, row.expected) == ("HighErrorRate", "failing", True)
    assert row.delays["leafwatch"] is not None
    # Each process reads the faults at most once a second: a request of the first second may pass.
    failing_tally = result.tallies[0]
    assert failing_tally.server_errors > 0
    assert failing_tally.answered <= 10
    assert result.tallies[1].server_errors == 0
    assert faults.json()["faults"] == []
    assert "| 1. failing | HighErrorRate | fired |" in markdown(result)
    assert as_json(result)["detections"][0]["alert"] == "HighErrorRate"


def test_without_auto_rollback_the_simulator_restores_the_model_itself(tmp_path: Path) -> None:
    reviewed = Traffic(feedback_share=1.0)
    scenario = Scenario(
        "worse",
        "a worse model, never rolled back by LeafWatch",
        (
            Phase("worse model", 3, traffic=reviewed, promote_worse_model=True),
            Phase("rollback", 2, traffic=reviewed, restore_model=True, until="rollback"),
            Phase("after", 2, traffic=reviewed),
        ),
    )
    settings = served(tmp_path)
    with uvicorn_thread(create_app(settings)) as url:
        options = SimulationOptions(
            url=url,
            rate=10,
            admin_token=TOKEN,
            model_dir=settings.resolved_model_dir(),
            model_name=settings.model_name,
            poll_seconds=0.25,
        )
        result = run(scenario, options)
    registry = LocalModelRegistry(settings.resolved_model_dir(), settings.model_name)
    assert registry.production().version == "1"
    notes = [note.text for note in result.notes]
    assert any("the simulator rolled back from version 2 to 1" in text for text in notes)
    worse, _rollback, after = result.tallies.values()
    assert set(worse.verdicts) == {"2"}
    assert worse.accuracy("2") < 0.75
    assert set(after.verdicts) == {"1"}
    assert after.accuracy("1") > 0.9
    assert [version for _, version in result.versions] == ["1", "2", "1"]
