"""The simulator against a real LeafWatch, Prometheus and Alertmanager, as `leafwatch demo` has.

The shipped rules run with every duration divided by 60 (ModelAccuracyDrop's 10 minutes become
10 s), and the scenarios' phases with them. Alertmanager sends model pages to LeafWatch's webhook,
and LeafWatch runs with automatic rollback on.
"""

import asyncio
from pathlib import Path

import httpx
import pytest

from leafwatch.model.registry import LocalModelRegistry
from leafwatch.simulate.demo import DemoServices, demo_services
from leafwatch.simulate.runner import Simulation, SimulationOptions, SimulationResult
from leafwatch.simulate.scenarios import get_scenario
from leafwatch.simulate.traffic import LeafPool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SPEED = 60


def simulate(name: str, services: DemoServices, *, rate: float) -> SimulationResult:
    """Run a scenario against the services, watching Prometheus, Alertmanager and LeafWatch."""
    scenario = get_scenario(name)
    options = SimulationOptions(
        url=services.url,
        rate=rate,
        speed=SPEED,
        prometheus_url=services.prometheus_url,
        alertmanager_url=services.alertmanager_url,
        admin_token=services.admin_token_file.read_text().strip(),
        model_dir=services.model_dir,
        pids=(services.pid,),
        poll_seconds=0.5,
    )
    pool = LeafPool.render(scenario.cameras, per_class=24, seed=options.seed)
    return asyncio.run(Simulation(scenario, options, pool=pool).run())


@pytest.mark.timeout(240)
def test_a_worse_model_fires_model_accuracy_drop_and_is_rolled_back_by_the_webhook(
    tmp_path: Path,
) -> None:
    with demo_services(tmp_path, deploy_dir=DEPLOY, speed=SPEED) as services:
        result = simulate("accuracy", services, rate=8)
        admin = {"Authorization": f"Bearer {services.admin_token_file.read_text().strip()}"}
        events = httpx.get(f"{services.url}/api/v1/alerts", headers=admin).json()["items"]
        rolled = [event for event in events if event["action"] == "rolled_back"]
        assert len(rolled) == 1, events
        since = {"from": rolled[0]["received_at"], "model_version": "1"}
        quality = httpx.get(f"{services.url}/api/v1/analytics/quality", params=since).json()
    phases = {span.name: span.index for span in result.spans}
    # The alert fired in Prometheus and reached Alertmanager, during the worse model's phase.
    (drop,) = [row for row in result.detections if row.alert == "ModelAccuracyDrop"]
    assert drop.phase.name == "worse model"
    assert drop.delays["prometheus"] is not None
    assert drop.delays["alertmanager"] is not None
    # Alertmanager called the webhook, which rolled the worse version back; the simulator did not.
    worse = result.versions[1][1]
    assert [version for _, version in result.versions] == ["1", worse, "1"]
    assert (rolled[0]["alertname"], rolled[0]["from_version"], rolled[0]["to_version"]) == (
        "ModelAccuracyDrop",
        worse,
        "1",
    )
    assert not [note for note in result.notes if "simulator rolled back" in note.text]
    registry = LocalModelRegistry(services.model_dir, "banana_sigatoka_detector")
    assert registry.production().version == "1"
    # The truth: the worse model was mostly wrong, the restored one is right again...
    assert result.tallies[phases["worse model"]].accuracy(worse) < 0.6
    after = result.tallies[phases["after rollback"]]
    assert set(after.verdicts) == {"1"}
    assert after.accuracy("1") > 0.9
    # ...and LeafWatch's realized accuracy, from the verdicts on predictions after the rollback.
    (window,) = quality["windows"]
    assert window["reviewed"] >= 20
    assert window["accuracy"] > 0.9


@pytest.mark.timeout(180)
def test_baseline_traffic_fires_no_alert(tmp_path: Path) -> None:
    with demo_services(tmp_path, deploy_dir=DEPLOY, speed=SPEED) as services:
        result = simulate("baseline", services, rate=5)
        drift = httpx.get(f"{services.url}/api/v1/drift").json()
    assert result.detections == []
    assert result.notes == []  # nothing was firing before the phase began either
    (steady,) = result.tallies.values()
    assert steady.answered == steady.sent > 100
    assert steady.feedback_sent > 0
    assert steady.accuracy("1") > 0.9
    # Drift runs every 10 s in the demo's settings: it ran on this traffic and found none.
    assert drift["status"] == "ok"
    assert not drift["drifted"]
