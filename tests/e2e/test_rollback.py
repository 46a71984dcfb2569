"""A real Alertmanager, configured from deploy/, pages LeafWatch's webhook; the model rolls back.

The alert is posted to Alertmanager's API as Prometheus would post it, so the route, the grouping,
the bearer token read from a file and the payload are Alertmanager's own.
"""

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from leafwatch.config import DEFAULT_MODEL_NAME
from leafwatch.model.registry import LocalModelRegistry, bundled_model
from leafwatch.stack import (
    AlertmanagerOverrides,
    free_port,
    load_yaml,
    render_alertmanager_config,
)
from tests.servers import eventually, leafwatch_serve, running

pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TOKEN = "e2e-admin-token"
LABELS = {
    "alertname": "ModelAccuracyDrop",
    "severity": "critical",
    "job": "leafwatch",
    "team": "ml-platform",
    "model_version": "2",
    "time_window": "1h",
}


def alertmanager_config(leafwatch: str, token_file: Path) -> dict[str, Any]:
    """The shipped configuration, its webhook pointed at this LeafWatch, other receivers nowhere."""
    closed = f"http://127.0.0.1:{free_port()}"
    overrides = AlertmanagerOverrides(
        smtp_smarthost=closed.removeprefix("http://"),
        smtp_require_tls=False,
        slack_api_url=f"{closed}/slack",
        pagerduty_url=f"{closed}/pagerduty",
        sns_api_url=f"{closed}/sns",
        group_wait="1s",
        group_interval="1s",
        leafwatch_webhook_url=f"{leafwatch}/api/v1/alerts",
        leafwatch_admin_token_file=token_file,
    )
    source = DEPLOY / "alertmanager" / "alertmanager.yml"
    return render_alertmanager_config(
        load_yaml(source), config_dir=source.parent, overrides=overrides
    )


def events(leafwatch: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{leafwatch}/api/v1/alerts", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    answer.raise_for_status()
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def served(leafwatch: str) -> str:
    version: str = httpx.get(f"{leafwatch}/model/info", timeout=5).json()["model_version"]
    return version


@pytest.mark.timeout(120)
def test_alertmanager_pages_the_webhook_and_leafwatch_rolls_the_model_back(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "var" / "models", DEFAULT_MODEL_NAME)
    registry.ensure_seeded()
    registry.promote(registry.register(*bundled_model()).version)
    token_file = tmp_path / "leafwatch_admin_token"
    token_file.write_text(TOKEN + "\n")
    environment = {
        "LEAFWATCH_ADMIN_TOKEN_FILE": str(token_file),
        "LEAFWATCH_AUTO_ROLLBACK": "true",
        "LEAFWATCH_MODEL_POLL_SECONDS": "0",  # the rollback is served by the webhook's reload
    }
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "Alertmanager is missing: `make tools` installs prometheus-alertmanager"
    with leafwatch_serve(tmp_path, env=environment) as (leafwatch, _server):
        assert served(leafwatch) == "2"
        config = tmp_path / "alertmanager.yml"
        config.write_text(yaml.safe_dump(alertmanager_config(leafwatch, token_file)))
        port = free_port()
        alertmanager = f"http://127.0.0.1:{port}"
        command = [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        log = tmp_path / "alertmanager.log"
        with running(command, ready_url=f"{alertmanager}/-/ready", log=log):
            fired = {"labels": LABELS, "annotations": {"summary": "accuracy below 75%"}}
            posted = httpx.post(f"{alertmanager}/api/v2/alerts", json=[fired], timeout=5)
            assert posted.status_code == 200, posted.text

            rolled_back = eventually(lambda: served(leafwatch) == "1", 20)
            assert rolled_back, f"not rolled back: {events(leafwatch)}\n{log.read_text()[-2000:]}"
            assert registry.production().version == "1"
            [event] = events(leafwatch)
            assert (event["action"], event["from_version"], event["to_version"]) == (
                "rolled_back",
                "2",
                "1",
            )
            assert event["alertname"] == "ModelAccuracyDrop"
            assert event["labels"] == LABELS
            assert len(event["fingerprint"]) == 16  # Alertmanager's own fingerprint

            # Prometheus ends an alert by sending it with an end time: Alertmanager sends the
            # resolution too, which is stored and changes nothing.
            ended = {**fired, "startsAt": _ago(60), "endsAt": _ago(1)}
            httpx.post(f"{alertmanager}/api/v2/alerts", json=[ended], timeout=5)
            resolved = eventually(
                lambda: [e["status"] for e in events(leafwatch)] == ["resolved", "firing"], 20
            )
            assert resolved, events(leafwatch)
            assert events(leafwatch)[0]["action"] == "none"
    assert registry.production().version == "1"


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()
