"""Drift over HTTP and in the service's schedule: reports, the admin token, the metrics."""

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.storage import db
from leafwatch.storage.tables import DriftReport, JobRun
from tests.monitor.test_drift import SAME, darker, store
from tests.scrape import total

ADMIN = {"Authorization": "Bearer admin-s3cret"}


def changed(settings: Settings, **changes: object) -> Settings:
    """The settings with some fields changed, validated like the environment's."""
    return Settings(**(settings.model_dump() | changes))


def test_reports_are_run_by_admins_and_read_by_anyone(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/drift").json()["error"] == "no_drift_report"
        assert client.post("/api/v1/drift/run").status_code == 403  # no admin token configured
    settings = changed(settings, admin_token="admin-s3cret", metrics_cache_seconds=0)
    engine = db.make_engine(settings.resolved_database_url())
    with Session(engine) as session:
        store(session, darker(SAME))
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        refused = client.post("/api/v1/drift/run", headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401
        ran = client.post("/api/v1/drift/run", headers=ADMIN)
        assert ran.status_code == 200, ran.text
        report = ran.json()
        assert report["status"] == "drift"
        assert client.get("/api/v1/drift").json() == report
        text = client.get("/metrics").text
    assert total(text, "data_drift_detected") == 1
    assert total(text, "data_drift_score", metric_type="image_statistics") > 0
    assert total(text, "data_drift_feature_drifted", feature="brightness_mean") == 1
    assert total(text, "data_drift_feature_drifted", feature="width") == 0
    assert total(text, "data_drift_current_samples") == len(SAME)


def test_a_version_without_a_reference_says_how_to_get_one(settings: Settings) -> None:
    settings = changed(settings, admin_token="admin-s3cret")
    with TestClient(create_app(settings)) as client:
        reference = client.app.state.runtime.model.reference_path  # type: ignore[attr-defined]
        reference.unlink()
        answer = client.post("/api/v1/drift/run", headers=ADMIN)
    assert answer.status_code == 409
    assert "LEAFWATCH_DRIFT_REFERENCE=live" in answer.json()["detail"]


@pytest.mark.parametrize("replicas", [2])
def test_the_schedule_runs_once_per_period_across_replicas(
    settings: Settings, tmp_path: Path, replicas: int
) -> None:
    settings = changed(settings, drift_interval_seconds=3600)
    apps = [create_app(settings) for _ in range(replicas)]
    clients = [TestClient(app) for app in apps]
    for client in clients:
        client.__enter__()
    try:
        engine = db.make_engine(settings.resolved_database_url())
        with Session(engine) as session:
            for _ in range(100):
                claims = session.scalar(select(func.count()).select_from(JobRun))
                reports = session.scalar(select(func.count()).select_from(DriftReport))
                if claims and reports:
                    break
                time.sleep(0.1)
        engine.dispose()
    finally:
        for client in clients:
            client.__exit__(None, None, None)
    assert (claims, reports) == (1, 1)
