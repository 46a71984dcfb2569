"""The real Prometheus and Alertmanager binaries, started from the shipped configuration."""

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from leafwatch.stack import AlertmanagerOverrides, LocalStack, StackError, StackOptions
from tests.servers import eventually, leafwatch_serve, receiver
from tests.stack import DEPLOY


def query(prometheus: str, expression: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=5)
    answer.raise_for_status()
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def test_prometheus_scrapes_leafwatch_and_reaches_alertmanager(tmp_path: Path) -> None:
    with leafwatch_serve(tmp_path) as (url, _server):
        target = url.removeprefix("http://")
        options = StackOptions(
            deploy_dir=DEPLOY,
            data_dir=tmp_path / "stack",
            leafwatch=(target,),
            scrape_interval="1s",
            evaluation_interval="1s",
        )
        with LocalStack(options) as stack:
            up = eventually(lambda: query(stack.prometheus_url, 'up{job="leafwatch"} == 1'))
            assert [series["metric"]["instance"] for series in up] == [target]
            managers = eventually(
                lambda: httpx.get(f"{stack.prometheus_url}/api/v1/alertmanagers").json()["data"][
                    "activeAlertmanagers"
                ]
            )
            assert [manager["url"] for manager in managers] == [
                f"{stack.alertmanager_url}/api/v2/alerts"
            ]
            assert httpx.get(f"{stack.alertmanager_url}/-/ready").status_code == 200
            rules = httpx.get(f"{stack.prometheus_url}/api/v1/rules").json()["data"]["groups"]
            assert {rule["name"] for group in rules for rule in group["rules"]} >= {
                "APIDown",
                "HighErrorRate",
            }
            processes = [process.popen for process in stack.processes]
        assert all(p is not None and p.poll() is not None for p in processes), "both stopped"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{stack.prometheus_url}/-/ready", timeout=1)


def test_a_failed_start_quotes_the_log_and_stops_what_started(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        options = StackOptions(
            deploy_dir=DEPLOY,
            data_dir=tmp_path / "stack",
            prometheus_port=taken.getsockname()[1],
            ready_timeout=15,
        )
        stack = LocalStack(options)
        with pytest.raises(
            StackError, match=r"prometheus exited with \d+;(.|\n)*address already in use"
        ):
            stack.start()
    alertmanager = stack.processes[0]
    assert alertmanager.name == "alertmanager"
    assert alertmanager.exit_code() is not None, "Alertmanager is stopped with the failed start"


def test_missing_binaries_name_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    stack = LocalStack(StackOptions(deploy_dir=DEPLOY, data_dir=tmp_path / "stack"))
    with pytest.raises(StackError, match=r"install the Debian package prometheus \("):
        stack.start()
    assert not (tmp_path / "stack").exists(), "nothing is written before the binaries are found"


def test_overrides_deliver_a_critical_alert_to_local_receivers(tmp_path: Path) -> None:
    with receiver() as (url, received):
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        # The shipped receivers read these files; their names are the shipped ones.
        (secrets / "slack_critical_webhook_url").write_text(f"{url}/slack/critical\n")
        (secrets / "slack_warnings_webhook_url").write_text(f"{url}/slack/warnings\n")
        (secrets / "pagerduty_routing_key").write_text("local-test-key")
        overrides = AlertmanagerOverrides(
            secrets_dir=secrets,
            pagerduty_url=f"{url}/pagerduty",
            sns_api_url=f"{url}/sns",
            group_wait="1s",
            group_interval="1s",
        )
        options = StackOptions(
            deploy_dir=DEPLOY,
            data_dir=tmp_path / "stack",
            alertmanager=overrides,
            # SNS signs its requests; any credentials do for a local stand-in.
            env={"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"},
        )
        with LocalStack(options) as stack:
            alert = {
                "labels": {"alertname": "StackCheck", "severity": "critical", "job": "stack-test"},
                "annotations": {"summary": "delivered through the local overrides"},
            }
            posted = httpx.post(f"{stack.alertmanager_url}/api/v2/alerts", json=[alert])
            assert posted.status_code == 200, posted.text
            paths = eventually(
                lambda: (
                    {path.rstrip("/") for path, _ in received}
                    >= {"/slack/critical", "/pagerduty", "/sns"}
                )
            )
            assert paths, f"delivered: {[path for path, _ in received]}\n" + (
                stack.processes[0].log_tail()
            )
    bodies = {path.rstrip("/"): body for path, body in received}
    assert b"local-test-key" in bodies["/pagerduty"]
    assert all(b"StackCheck" in body for body in bodies.values())
    assert "/slack/warnings" not in bodies, "a critical alert does not go to the warnings channel"
