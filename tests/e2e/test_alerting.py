"""The whole alert path, for real: LeafWatch fails, Prometheus notices, Alertmanager notifies.

LeafWatch, Prometheus and Alertmanager run as in production, from the shipped deploy/ files; the
rules' durations are divided by 30 (an overlay written at run time, not a second copy of the
rules) and the receivers' endpoints point at local stand-ins: a real SMTP server, and HTTP
endpoints for Slack, PagerDuty and SNS.
"""

import email
import email.policy
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from leafwatch.stack import AlertmanagerOverrides, LocalStack, StackOptions
from tests.servers import eventually, free_port, leafwatch_serve, receiver

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ADMIN = {"Authorization": "Bearer e2e-admin"}
SUMMARY = "LeafWatch answers too many requests with a server error"
ROUTE = "/model/info"


class Mailbox:
    """An aiosmtpd handler keeping every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"

    def texts(self) -> list[str]:
        """Subject and every text part of each message."""
        texts = []
        for message in self.messages:
            parts = [str(message["Subject"])]
            for part in message.walk():
                if part.get_content_maintype() == "text":
                    parts.append(part.get_content())  # type: ignore[attr-defined]
            texts.append("\n".join(parts))
        return texts


@contextmanager
def smtp_server() -> Iterator[tuple[str, Mailbox]]:
    """A real SMTP server on 127.0.0.1 (no TLS, no login) that keeps what it receives."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield f"127.0.0.1:{controller.port}", mailbox
    finally:
        controller.stop()


@contextmanager
def steady_traffic(url: str) -> Iterator[list[int]]:
    """About 20 requests a second to one route until the block ends; yields their statuses."""
    statuses: list[int] = []
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                statuses.append(client.get(ROUTE).status_code)
                stop.wait(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(timeout=15)


def alert_states(prometheus: str, name: str) -> list[str]:
    """The states (pending, firing) of the alerts of that name in Prometheus now."""
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [alert["state"] for alert in alerts if alert["labels"]["alertname"] == name]


def by_receiver(received: list[tuple[str, bytes]]) -> dict[str, list[str]]:
    """What each HTTP stand-in received, as text, keyed by its path."""
    bodies: dict[str, list[str]] = {}
    for path, body in received:
        bodies.setdefault(path.rstrip("/"), []).append(body.decode("utf-8", "replace"))
    return bodies


def sns_messages(bodies: list[str]) -> list[str]:
    """The SMS texts of SNS Publish calls (form-encoded)."""
    return [parse_qs(body).get("Message", [""])[0] for body in bodies]


@pytest.mark.timeout(300)
def test_injected_errors_fire_high_error_rate_to_every_receiver_and_it_resolves(
    tmp_path: Path,
) -> None:
    environment = {"LEAFWATCH_FAULTS_ENABLED": "true", "LEAFWATCH_ADMIN_TOKEN": "e2e-admin"}
    with (
        smtp_server() as (smarthost, mailbox),
        receiver() as (hooks, received),
        leafwatch_serve(tmp_path, env=environment) as (url, _server),
    ):
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        # The shipped receivers read their secrets from files of these names.
        (secrets / "slack_critical_webhook_url").write_text(f"{hooks}/slack/critical\n")
        (secrets / "slack_warnings_webhook_url").write_text(f"{hooks}/slack/warnings\n")
        (secrets / "pagerduty_routing_key").write_text("e2e-routing-key")
        (secrets / "smtp_password").write_text("unused: the local server offers no login")
        options = StackOptions(
            deploy_dir=DEPLOY,
            data_dir=tmp_path / "stack",
            leafwatch=(url.removeprefix("http://"),),
            time_scale=30,  # 5 minutes become 10 seconds, in `for:` and in every range
            alertmanager=AlertmanagerOverrides(
                smtp_smarthost=smarthost,
                smtp_require_tls=False,
                pagerduty_url=f"{hooks}/pagerduty",
                sns_api_url=f"{hooks}/sns",
                secrets_dir=secrets,
                group_wait="1s",
                group_interval="2s",
            ),
            env={"AWS_ACCESS_KEY_ID": "e2e", "AWS_SECRET_ACCESS_KEY": "e2e"},
        )
        with LocalStack(options) as stack, steady_traffic(url) as statuses:
            prometheus = stack.prometheus_url
            assert eventually(lambda: alert_states(prometheus, "HighErrorRate") == [], 5) is True
            fault = {"route": ROUTE, "error_ratio": 0.5}
            injected = httpx.post(f"{url}/api/v1/admin/faults", json=fault, headers=ADMIN)
            assert injected.status_code == 200, injected.text
            fault_began = time.monotonic()

            fired = eventually(lambda: alert_states(prometheus, "HighErrorRate") == ["firing"], 90)
            assert fired, f"HighErrorRate did not fire\n{stack.processes[-1].log_tail()}"
            fired_after = time.monotonic() - fault_began

            def notified_everywhere() -> bool:
                bodies = by_receiver(received)
                return (
                    any(SUMMARY in text for text in mailbox.texts())
                    and any(SUMMARY in body for body in bodies.get("/slack/critical", []))
                    and any(SUMMARY in body for body in bodies.get("/pagerduty", []))
                    and any(SUMMARY in text for text in sns_messages(bodies.get("/sns", [])))
                )

            assert eventually(notified_everywhere, 60), (
                f"not every receiver was notified: {sorted(by_receiver(received))}, "
                f"{len(mailbox.messages)} mails\n{stack.processes[0].log_tail()}"
            )
            assert 500 in statuses, "the fault switch failed some requests"
            assert 200 in statuses, "and answered the others"

            cleared = httpx.delete(f"{url}/api/v1/admin/faults", headers=ADMIN)
            assert cleared.json()["removed"] == 1
            resolved = eventually(lambda: alert_states(prometheus, "HighErrorRate") == [], 90)
            assert resolved, "HighErrorRate still fires after the failures stopped"

            def resolution_sent() -> bool:
                slack = by_receiver(received).get("/slack/critical", [])
                return any(SUMMARY in body and "RESOLVED" in body.upper() for body in slack)

            assert eventually(resolution_sent, 60), by_receiver(received).get("/slack/critical")
    # The injected faults announce themselves as such, on the warnings channel only.
    warnings = by_receiver(received).get("/slack/warnings", [])
    assert any("FaultInjectionActive" in body for body in warnings)
    critical = "".join(by_receiver(received).get("/slack/critical", []))
    assert "FaultInjectionActive" not in critical
    print(f"HighErrorRate fired {fired_after:.0f} s after the fault began (rules at 1/30 time)")
