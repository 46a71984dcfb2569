"""The fault switch: off by default, admin only, shared by every process, counted apart."""

import json
import time
from pathlib import Path

from fastapi.testclient import TestClient

from leafwatch.app import create_app
from leafwatch.config import Settings
from tests.scrape import total

ADMIN = {"Authorization": "Bearer admin-s3cret"}
FAULTS = "/api/v1/admin/faults"


def switched_on(settings: Settings, **changes: object) -> Settings:
    """The settings with the fault switch on and an admin token (unless changed)."""
    changes = {"faults_enabled": True, "admin_token": "admin-s3cret", **changes}
    return Settings(**(settings.model_dump() | changes))


def test_the_switch_is_off_by_default_and_answers_404(client: TestClient) -> None:
    for method in ("GET", "POST", "DELETE"):
        answer = client.request(method, FAULTS, headers=ADMIN, json={"route": "/health"})
        assert answer.status_code == 404
        assert answer.json()["error"] == "not_found"


def test_only_the_admin_token_sets_faults(settings: Settings) -> None:
    fault = {"route": "/health", "error_ratio": 1}
    with TestClient(create_app(switched_on(settings, admin_token=None))) as client:
        assert client.post(FAULTS, json=fault).status_code == 403  # no admin token configured
    with TestClient(create_app(switched_on(settings))) as client:
        assert client.post(FAULTS, json=fault).status_code == 401
        refused = client.post(FAULTS, json=fault, headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401
        assert client.get("/health").status_code == 200


def test_injected_errors_are_answered_counted_and_logged_then_cleared(
    settings: Settings, tmp_path: Path
) -> None:
    with TestClient(create_app(switched_on(settings))) as client:
        set_answer = client.post(FAULTS, json={"route": "/health", "error_ratio": 1}, headers=ADMIN)
        assert set_answer.status_code == 200, set_answer.text
        assert [f["route"] for f in set_answer.json()["faults"]] == ["/health"]
        failed = client.get("/health")
        assert failed.status_code == 500
        assert failed.json()["error"] == "injected_fault"
        assert client.get("/ready").status_code == 200  # other routes are untouched
        text = client.get("/metrics").text
        assert total(text, "api_injected_faults_total", endpoint="/health", kind="error") == 1
        assert total(text, "api_requests_total", endpoint="/health", status="500") == 1
        cleared = client.delete(FAULTS, headers=ADMIN).json()
        assert cleared == {"faults": [], "removed": 1}
        assert client.get("/health").status_code == 200
    lines = [json.loads(line) for line in (tmp_path / "logs" / "app.log").read_text().splitlines()]
    events = [line for line in lines if line["event"] == "fault injected"]
    assert [(e["route"], e["kind"], e["level"]) for e in events] == [
        ("/health", "error", "warning")
    ]


def test_latency_is_added_and_an_error_share_is_a_share(settings: Settings) -> None:
    with TestClient(create_app(switched_on(settings))) as client:
        client.post(FAULTS, json={"route": "/health", "latency_ms": 300}, headers=ADMIN)
        started = time.perf_counter()
        assert client.get("/health").status_code == 200
        assert time.perf_counter() - started >= 0.3
        client.post(FAULTS, json={"route": "/health", "error_ratio": 0.5}, headers=ADMIN)
        statuses = [client.get("/health").status_code for _ in range(200)]
        text = client.get("/metrics").text
    # Binomial(200, 0.5): outside 60-140 once in about 10^8 runs.
    assert 60 <= statuses.count(500) <= 140
    assert statuses.count(500) + statuses.count(200) == 200
    assert total(text, "api_injected_faults_total", endpoint="/health", kind="latency") == 1
    assert total(text, "api_request_latency_seconds_count", endpoint="/health") >= 201
    slow = total(text, "api_request_latency_seconds_bucket", endpoint="/health", le="0.25")
    assert slow == total(text, "api_request_latency_seconds_count", endpoint="/health") - 1


def test_a_fault_applies_in_every_process_and_expires(settings: Settings) -> None:
    settings = switched_on(settings)
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as other:
        assert other.get("/health").status_code == 200  # `other` has read the faults: none
        fault = {"route": "/health", "error_ratio": 1, "duration_seconds": 2.5}
        assert one.post(FAULTS, json=fault, headers=ADMIN).status_code == 200
        time.sleep(1.1)  # each process rereads the faults at most once a second
        assert other.get("/health").status_code == 500
        time.sleep(1.5)
        assert other.get("/health").status_code == 200
        assert one.get(FAULTS, headers=ADMIN).json() == {"faults": [], "removed": None}


def test_bad_faults_get_clear_answers(settings: Settings) -> None:
    with TestClient(create_app(switched_on(settings))) as client:
        cases = {
            "unknown_route": {"route": "/nowhere", "error_ratio": 1},
            "invalid_request": {"route": "/health"},
        }
        for code, fault in cases.items():
            answer = client.post(FAULTS, json=fault, headers=ADMIN)
            assert (answer.status_code, answer.json()["error"]) == (422, code), answer.text
        self_fault = client.post(FAULTS, json={"route": FAULTS, "error_ratio": 1}, headers=ADMIN)
        assert self_fault.json()["error"] == "unknown_route"  # the switch cannot lock itself out
        assert "/api/v1/predict" in self_fault.json()["detail"]
        for bad in ({"error_ratio": 2}, {"latency_ms": -1}, {"duration_seconds": 0}):
            answer = client.post(FAULTS, json={"route": "/health", **bad}, headers=ADMIN)
            assert answer.status_code == 422
        assert client.delete(FAULTS, params={"route": "/x"}, headers=ADMIN).status_code == 422
