"""Reading alerts: the shipped conditions over LeafWatch's own /metrics, and histogram quantiles."""

import asyncio
from pathlib import Path

import httpx
import pytest

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.simulate.observe import LeafWatchAlerts, Observer, Scrape, conditions, quantile
from leafwatch.stack import free_port
from tests.servers import uvicorn_thread

ADMIN = {"Authorization": "Bearer observe-admin"}


def scrape(at: float, **figures: object) -> Scrape:
    values: dict[str, object] = {
        "requests": {},
        "latency_buckets": {},
        "injected": 0.0,
        "served_version": "1",
        "accuracy": [],
        "drift_runs": 0.0,
        "drift_scores": {},
    }
    values.update(figures)
    return Scrape(at=at, **values)  # type: ignore[arg-type]


def test_quantile_interpolates_inside_the_bucket_as_prometheus_does() -> None:
    before = {0.1: 0.0, 0.5: 0.0, 1.0: 0.0, float("inf"): 0.0}
    after = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert quantile(0.5, after, before) == pytest.approx(0.1)
    # 95th of 100: between 90 (0.5 s) and 100 (1 s), halfway.
    assert quantile(0.95, after, before) == pytest.approx(0.75)
    assert quantile(0.95, before, before) is None
    slow = {0.1: 0.0, 1.0: 0.0, float("inf"): 10.0}
    assert quantile(0.95, slow, {}) == 1.0  # in the +Inf bucket: its lower edge


def test_a_model_accuracy_drop_needs_fifty_verdicts_and_the_served_version() -> None:
    old = scrape(0.0)
    few = scrape(10.0, accuracy=[("1", 0.5, 49.0)])
    enough = scrape(10.0, accuracy=[("1", 0.5, 50.0)])
    other = scrape(10.0, accuracy=[("2", 0.5, 500.0)])
    assert "ModelAccuracyDrop" not in conditions(few, old)
    assert "ModelAccuracyDrop" in conditions(enough, old)
    assert "ModelAccuracyDrop" not in conditions(other, old)


def test_data_drift_needs_three_runs_and_a_score_worth_reporting() -> None:
    old = scrape(0.0)
    two = scrape(10.0, drift_runs=2.0, drift_scores={"image_statistics": 0.8})
    small = scrape(10.0, drift_runs=5.0, drift_scores={"image_statistics": 0.05})
    real = scrape(10.0, drift_runs=3.0, drift_scores={"confidence": 0.3})
    assert "DataDriftDetected" not in conditions(two, old)
    assert "DataDriftDetected" not in conditions(small, old)
    assert "DataDriftDetected" in conditions(real, old)


def test_errors_and_latency_count_served_routes_only() -> None:
    old = scrape(0.0, requests={("/api/v1/predict", "2"): 0.0, ("/metrics", "5"): 0.0})
    probes_fail = scrape(10.0, requests={("/api/v1/predict", "2"): 20.0, ("/metrics", "5"): 100.0})
    assert conditions(probes_fail, old) == frozenset()
    failing = scrape(10.0, requests={("/api/v1/predict", "2"): 18.0, ("/api/v1/predict", "5"): 2.0})
    assert "HighErrorRate" in conditions(failing, old)  # 10% > 5%
    # Under 0.1 requests a second nothing is judged: one failure in three is not an alert.
    quiet = scrape(100.0, requests={("/api/v1/predict", "2"): 2.0, ("/api/v1/predict", "5"): 1.0})
    assert conditions(quiet, old) == frozenset()


def test_leafwatch_figures_show_injected_errors_and_a_silent_service(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path / "var",
        migrate_on_start=True,
        faults_enabled=True,
        admin_token="observe-admin",  # type: ignore[arg-type]
    )

    async def watch(url: str) -> tuple[frozenset[str] | None, frozenset[str] | None]:
        source = LeafWatchAlerts(url, window_s=60)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            before = await source.firing(client)
            fault = {"route": "/model/info", "error_ratio": 1.0}
            assert (await client.post("/api/v1/admin/faults", json=fault, headers=ADMIN)).is_success
            for _ in range(20):
                assert (await client.get("/model/info")).status_code == 500
            return before, await source.firing(client)

    with uvicorn_thread(create_app(settings)) as url:
        before, after = asyncio.run(watch(url))
    assert before == frozenset()
    assert after == {"HighErrorRate", "FaultInjectionActive"}

    async def silent() -> frozenset[str] | None:
        nobody = f"http://127.0.0.1:{free_port()}"
        async with httpx.AsyncClient() as client:
            return await LeafWatchAlerts(nobody, window_s=60).firing(client)

    assert asyncio.run(silent()) == {"APIDown"}


def test_the_observer_remembers_what_each_poll_saw(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    observer = Observer([LeafWatchAlerts(nobody, window_s=60)], leafwatch_url=nobody)

    async def poll_twice() -> None:
        async with httpx.AsyncClient() as client:
            await observer.poll(client)
            await observer.poll(client)

    asyncio.run(poll_twice())
    assert observer.firing() == {"APIDown"}
    assert observer.fired_since(0.0) == {"APIDown"}
    assert [episode.alert for episode in observer.episodes()["leafwatch"]] == ["APIDown"]
    assert observer.served_version is None
    assert observer.can_report(["APIDown", "LatencyBudgetBurnFast"]) == {"APIDown"}
