"""The Alertmanager webhook: each alert stored, counted and logged; a bad version rolled back."""

import json
import threading
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.model.registry import LocalModelRegistry, bundled_model
from tests.scrape import total

TOKEN = "admin-s3cret"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ALERTS = "/api/v1/alerts"
ROUTE_KEY = '{}/{severity="critical"}/{model_version=~".+"}'
RUNBOOK = "https://github.com/leafwatch/leafwatch/blob/main/docs/runbooks/ModelAccuracyDrop.md"


def alert(
    status: str = "firing",
    *,
    model_version: str | None = "3",
    severity: str = "critical",
    alertname: str = "ModelAccuracyDrop",
    fingerprint: str = "c3f1a8e07b2d4f15",
    starts_at: str = "2026-12-01T10:00:00.123456789Z",
) -> dict[str, Any]:
    """One alert as Alertmanager 0.25 sends it to a webhook."""
    labels = {
        "alertname": alertname,
        "job": "leafwatch",
        "severity": severity,
        "team": "ml-platform",
        "time_window": "1h",
    }
    if model_version is not None:
        labels["model_version"] = model_version
    return {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": "The served LeafWatch model is measurably less accurate than 75%",
            "runbook_url": RUNBOOK,
        },
        "startsAt": starts_at,
        "endsAt": "2026-12-01T10:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=job%3Amodel_accuracy",
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    """A webhook notification (payload version 4) grouping these alerts."""
    group = {"alertname": alerts[0]["labels"]["alertname"], "job": "leafwatch"}
    group["severity"] = alerts[0]["labels"]["severity"]
    return {
        "receiver": "leafwatch",
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": list(alerts),
        "groupLabels": group,
        "commonLabels": {**group, "team": "ml-platform"},
        "commonAnnotations": {"runbook_url": RUNBOOK},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": ROUTE_KEY + f':{{alertname="{group["alertname"]}"}}',
        "truncatedAlerts": 0,
    }


def webhook_settings(settings: Settings, **changes: object) -> Settings:
    """The settings with an admin token and automatic rollback (unless changed)."""
    changes = {"admin_token": TOKEN, "auto_rollback": True, "model_poll_seconds": 0, **changes}
    return Settings(**(settings.model_dump() | changes))


def three_versions(settings: Settings) -> LocalModelRegistry:
    """A registry whose production history is 1, 2, 3: version 3 serves."""
    registry = LocalModelRegistry(settings.resolved_model_dir(), settings.model_name)
    registry.ensure_seeded()
    model_path, card = bundled_model()
    for _ in range(2):
        registry.promote(registry.register(model_path, card).version)
    assert registry.promotion_history() == ["1", "2", "3"]
    return registry


def post(client: TestClient, *alerts: dict[str, Any]) -> list[dict[str, Any]]:
    answer = client.post(ALERTS, json=notification(*alerts), headers=ADMIN)
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def served(client: TestClient) -> str:
    version: str = client.get("/model/info").json()["model_version"]
    return version


def logged(tmp_path: Path, event: str) -> list[dict[str, Any]]:
    lines = (tmp_path / "logs" / "app.log").read_text().splitlines()
    return [record for line in lines if (record := json.loads(line))["event"] == event]


def test_a_firing_critical_alert_on_production_rolls_back_once(
    settings: Settings, tmp_path: Path
) -> None:
    registry = three_versions(settings)
    with TestClient(create_app(webhook_settings(settings))) as client:
        assert served(client) == "3"
        [first] = post(client, alert())
        assert (first["action"], first["from_version"], first["to_version"]) == (
            "rolled_back",
            "3",
            "2",
        )
        assert first["alertname"] == "ModelAccuracyDrop"
        assert first["starts_at"].startswith("2026-12-01T10:00:00.123456")
        assert registry.production().version == "2"
        assert served(client) == "2", "this process serves the previous version at once"
        # Alertmanager repeats the notification; a second rollback would go on to version 1.
        [repeat] = post(client, alert())
        assert repeat["action"] == "skipped"
        assert "already rolled back automatically" in repeat["detail"]
        assert registry.production().version == "2"
        text = client.get("/metrics").text
        listed = client.get(ALERTS, headers=ADMIN).json()
    counted = {"alertname": "ModelAccuracyDrop", "status": "firing"}
    assert total(text, "alert_events_total", **counted, action="rolled_back") == 1
    assert total(text, "alert_events_total", **counted, action="skipped") == 1
    assert [item["event_id"] for item in listed["items"]] == [repeat["event_id"], first["event_id"]]
    assert listed["items"][1]["labels"]["time_window"] == "1h"
    received = logged(tmp_path, "alert received")
    assert [(r["action"], r["level"]) for r in received] == [
        ("rolled_back", "warning"),
        ("skipped", "info"),
    ]


def test_one_notification_with_several_alerts_on_the_version_rolls_back_once(
    settings: Settings,
) -> None:
    registry = three_versions(settings)
    with TestClient(create_app(webhook_settings(settings))) as client:
        events = post(
            client,
            alert(fingerprint="aaaa000000000001"),
            alert(fingerprint="aaaa000000000002"),
        )
    assert [event["action"] for event in events] == ["rolled_back", "skipped"]
    assert registry.production().version == "2"


def test_a_version_promoted_again_by_hand_is_not_rolled_back_automatically_again(
    settings: Settings,
) -> None:
    registry = three_versions(settings)
    with TestClient(create_app(webhook_settings(settings))) as client:
        assert post(client, alert())[0]["action"] == "rolled_back"
        registry.promote("3")  # someone decides version 3 was fine after all
        [later] = post(
            client, alert(fingerprint="d00d000000000009", starts_at="2026-12-02T08:00:00Z")
        )
    assert later["action"] == "skipped"
    assert "by event" in later["detail"]
    assert registry.production().version == "3"


def test_an_alert_naming_a_version_no_longer_in_production_is_skipped(settings: Settings) -> None:
    registry = three_versions(settings)
    with TestClient(create_app(webhook_settings(settings))) as client:
        [event] = post(client, alert(model_version="2"))
        assert served(client) == "3"
    assert event["action"] == "skipped"
    assert event["detail"].startswith("production is version 3, not 2")
    assert registry.production().version == "3"


def test_a_resolved_alert_is_recorded_and_changes_nothing(settings: Settings) -> None:
    registry = three_versions(settings)
    with TestClient(create_app(webhook_settings(settings))) as client:
        [event] = post(client, alert("resolved"))
        text = client.get("/metrics").text
    assert (event["action"], event["status"]) == ("none", "resolved")
    assert registry.production().version == "3"
    assert total(text, "alert_events_total", status="resolved", action="none") == 1


def test_warnings_and_alerts_without_a_version_change_nothing(settings: Settings) -> None:
    registry = three_versions(settings)
    with TestClient(create_app(webhook_settings(settings))) as client:
        events = post(
            client,
            alert(alertname="LowPredictionConfidence", severity="warning"),
            alert(alertname="HighErrorRate", model_version=None, fingerprint="e000000000000002"),
        )
    assert [event["action"] for event in events] == ["none", "none"]
    assert all("model_version label" in event["detail"] for event in events)
    assert registry.production().version == "3"


def test_with_auto_rollback_off_the_alert_is_recorded_and_nothing_is_done(
    settings: Settings,
) -> None:
    assert Settings().auto_rollback is False, "off by default"
    registry = three_versions(settings)
    with TestClient(create_app(webhook_settings(settings, auto_rollback=False))) as client:
        [event] = post(client, alert())
        listed = client.get(ALERTS, headers=ADMIN).json()["items"]
    assert event["action"] == "none"
    assert "LEAFWATCH_AUTO_ROLLBACK" in event["detail"]
    assert [item["event_id"] for item in listed] == [event["event_id"]]
    assert registry.production().version == "3"


def test_the_webhook_and_the_list_need_the_admin_token(settings: Settings) -> None:
    registry = three_versions(settings)
    with TestClient(create_app(webhook_settings(settings, admin_token=None))) as client:
        assert client.post(ALERTS, json=notification(alert()), headers=ADMIN).status_code == 403
    with TestClient(create_app(webhook_settings(settings))) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            refused = client.post(ALERTS, json=notification(alert()), headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"] == "unauthorized"
            assert client.get(ALERTS, headers=headers).status_code == 401
        assert client.get(ALERTS, headers=ADMIN).json()["items"] == []
    assert registry.production().version == "3"


MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"version": "3"}, "version"),
    ({"alerts": []}, "alerts"),
    ({"alerts": [{**alert(), "startsAt": "yesterday"}]}, "alerts.0.startsAt"),
    ({"alerts": [{**alert(), "status": "pending"}]}, "alerts.0.status"),
    ({"alerts": [{k: v for k, v in alert().items() if k != "fingerprint"}]}, "fingerprint"),
]


def test_a_malformed_notification_is_a_422_that_names_the_field(settings: Settings) -> None:
    three_versions(settings)
    with TestClient(create_app(webhook_settings(settings))) as client:
        for change, field in MALFORMED:
            answer = client.post(ALERTS, json=notification(alert()) | change, headers=ADMIN)
            assert answer.status_code == 422, change
            assert answer.json()["error"] == "invalid_request"
            assert field in answer.json()["detail"], answer.json()
        assert client.get(ALERTS, headers=ADMIN).json()["items"] == []


def test_a_registry_failure_is_recorded_and_a_later_delivery_rolls_back(
    settings: Settings,
) -> None:
    registry = three_versions(settings)
    # The registry writes its aliases through this temporary file: a directory there fails it.
    blocker = registry.folder / "aliases.tmp"
    blocker.mkdir()
    with TestClient(create_app(webhook_settings(settings))) as client:
        [failed] = post(client, alert())
        assert failed["action"] == "failed"
        assert "IsADirectoryError" in failed["detail"]
        assert registry.production().version == "3"
        blocker.rmdir()
        [retried] = post(client, alert())
        text = client.get("/metrics").text
    assert retried["action"] == "rolled_back", "a failure does not use up the version's rollback"
    assert registry.production().version == "2"
    assert total(text, "alert_events_total", action="failed") == 1


def test_workers_receiving_the_same_alert_at_once_roll_back_once(settings: Settings) -> None:
    registry = three_versions(settings)
    body = notification(alert())
    # Two apps on one database and registry stand for two workers; each gets two deliveries.
    with (
        TestClient(create_app(webhook_settings(settings))) as one,
        TestClient(create_app(webhook_settings(settings))) as two,
    ):
        for client in (one, two):
            # One request each first: two apps in one process building their validators lazily
            # at the same moment race in pydantic; real workers are processes of their own.
            assert client.post(ALERTS, json={}, headers=ADMIN).status_code == 422
        start = threading.Barrier(4)
        actions: list[str] = []

        def deliver(client: TestClient) -> None:
            start.wait()
            answer = client.post(ALERTS, json=body, headers=ADMIN)
            actions.extend(event["action"] for event in answer.json()["events"])

        threads = [threading.Thread(target=deliver, args=(c,)) for c in (one, two, one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert sorted(actions) == ["rolled_back", "skipped", "skipped", "skipped"]
    assert registry.production().version == "2"
    assert registry.promotion_history() == ["1", "2"]


def test_events_are_listed_newest_first_a_page_at_a_time(settings: Settings) -> None:
    three_versions(settings)
    with TestClient(create_app(webhook_settings(settings, auto_rollback=False))) as client:
        fingerprints = [f"f{n:015d}" for n in range(5)]
        post(client, *(alert(fingerprint=fingerprint) for fingerprint in fingerprints))
        pages, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get(ALERTS, params=params, headers=ADMIN).json()
            pages.append([item["fingerprint"] for item in page["items"]])
            if (cursor := page["next_cursor"]) is None:
                break
        bad = client.get(ALERTS, params={"cursor": "abc"}, headers=ADMIN)
    assert pages == [fingerprints[4:2:-1], fingerprints[2:0:-1], fingerprints[:1]]
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_cursor"
