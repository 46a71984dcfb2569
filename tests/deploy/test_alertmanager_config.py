"""Alertmanager routes alerts to the right people, hides what an outage causes, keeps no secret.

Checked with the real tools: amtool (config, routing, templates) and a running Alertmanager.
"""

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.servers import free_port, running

ALERTMANAGER_DIR = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager"
CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"
TEMPLATES = str(ALERTMANAGER_DIR / "templates" / "*.tmpl")
SECRETS_DIR = "/etc/alertmanager/secrets/"

# The shared contract: every alert name and its severity.
CRITICAL = [
    "APIDown",
    "HighErrorRate",
    "ModelAccuracyDrop",
    "ModelNotLoaded",
    "AvailabilityBudgetBurnFast",
    "LatencyBudgetBurnFast",
    "HostDiskSpaceLow",
]
WARNING = [
    "HighLatency",
    "DataDriftDetected",
    "NoPredictions",
    "LowPredictionConfidence",
    "ModelEstimationGap",
    "RejectedUploadsSpike",
    "AvailabilityBudgetBurnSlow",
    "LatencyBudgetBurnSlow",
    "HostHighMemory",
    "HostHighCPU",
    "FaultInjectionActive",
    "HostDiskSpaceLow",  # the early stage of the disk alert
    "SpoolNotDraining",
]
PAGE = "email-critical,slack-critical,pagerduty-critical,sms-critical"
# A page naming a model version also goes to LeafWatch's webhook, which may roll it back.
MODEL_PAGE = f"leafwatch,{PAGE}"
LEAFWATCH_WEBHOOK = "http://leafwatch:8000/api/v1/alerts"
WARNINGS_CHANNEL = "slack-warnings"
# What an outage of the API brings about, and what it does not.
CAUSED_BY_OUTAGE = [
    "HighErrorRate",
    "HighLatency",
    "NoPredictions",
    "ModelNotLoaded",
    "LowPredictionConfidence",
    "AvailabilityBudgetBurnFast",
    "AvailabilityBudgetBurnSlow",
    "LatencyBudgetBurnFast",
    "LatencyBudgetBurnSlow",
]
INDEPENDENT_OF_OUTAGE = [
    "APIDown",
    "RejectedUploadsSpike",
    "ModelAccuracyDrop",
    "DataDriftDetected",
    "FaultInjectionActive",
    "HostDiskSpaceLow",
    "HostHighMemory",
    "HostHighCPU",
    "SpoolNotDraining",
]
MATCHER = re.compile(r'^\s*(\w+)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')
RUNBOOK = "https://github.com/leafwatch/leafwatch/blob/main/docs/runbooks/HighErrorRate.md"


def load_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return config


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("amtool")
    assert tool, "amtool is missing: `make tools` installs prometheus-alertmanager"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=30, check=False)


def routed_receivers(**labels: str) -> str:
    """The receivers an alert with these labels reaches, in route order, as amtool reports them."""
    pairs = [f"{name}={value}" for name, value in labels.items()]
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", *pairs)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def matches(matchers: list[str], labels: dict[str, str]) -> bool:
    """Whether Alertmanager matchers select these labels (regexes anchored, as in Alertmanager)."""
    for matcher in matchers:
        found = MATCHER.match(matcher)
        assert found, f"cannot read matcher {matcher!r}"
        name, operator, value = found.groups()
        actual = labels.get(name, "")
        hit = {
            "=": actual == value,
            "!=": actual != value,
            "=~": re.fullmatch(value, actual) is not None,
            "!~": re.fullmatch(value, actual) is None,
        }[operator]
        if not hit:
            return False
    return True


def walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (key path, value) pair of a parsed YAML tree, list items keyed by their index."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, dict | list):
            yield from walk(value, (*path, str(key)))
        else:
            yield (*path, str(key)), value


def alert(status: str, summary: str, **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"severity": "critical", "team": "ml-platform", "job": "leafwatch", **labels},
        "annotations": {
            "summary": summary,
            "description": "The 5xx share over 5m is 12.5% (> 5%) & rising <fast>.",
            "runbook_url": RUNBOOK,
        },
        "startsAt": "2026-11-29T11:30:00Z",
        "endsAt": "2026-11-29T11:50:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=job%3Aerrors",
        "fingerprint": "1",
    }


def notification(*alerts: dict[str, Any], summary: str = "") -> dict[str, Any]:
    """Template data as Alertmanager builds it for a HighErrorRate group."""
    group = {"alertname": "HighErrorRate", "severity": "critical", "job": "leafwatch"}
    annotations = {"runbook_url": RUNBOOK, **({"summary": summary} if summary else {})}
    return {
        "receiver": "email-critical",
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": list(alerts),
        "groupLabels": group,
        "commonLabels": {**group, "team": "ml-platform"},
        "commonAnnotations": annotations,
        "externalURL": "http://alertmanager.example.org:9093",
    }


def render(tmp_path: Path, template: str, data: dict[str, Any], kind: str = "text") -> str:
    """A template string rendered by amtool with LeafWatch's templates, as Alertmanager would."""
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    result = amtool(
        "template",
        "render",
        f"--template.glob={TEMPLATES}",
        f"--template.data={data_file}",
        f"--template.type={kind}",
        f"--template.text={template}",
    )
    assert result.returncode == 0, f"{template}: {result.stderr}"
    return result.stdout


FIRING = alert(
    "firing",
    "12.5% of LeafWatch predictions fail",
    alertname="HighErrorRate",
    endpoint="/api/v1/predict",
    instance="leafwatch-1:8000",
    model_version="3",
)
RESOLVED = alert(
    "resolved", "2% of health checks failed", alertname="HighErrorRate", endpoint="/health"
)


def test_amtool_accepts_the_config_and_its_templates() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "1 templates" in result.stdout


@pytest.mark.parametrize("name", CRITICAL)
def test_a_critical_alert_reaches_email_slack_pagerduty_and_sms(name: str) -> None:
    labels = {"alertname": name, "severity": "critical", "job": "leafwatch", "team": "ml-platform"}
    assert routed_receivers(**labels) == PAGE


@pytest.mark.parametrize("name", WARNING)
def test_a_warning_reaches_only_the_slack_warnings_channel(name: str) -> None:
    labels = {"alertname": name, "severity": "warning", "job": "leafwatch", "team": "ml-platform"}
    assert routed_receivers(**labels) == WARNINGS_CHANNEL


def test_a_critical_alert_on_a_model_version_also_reaches_the_leafwatch_webhook() -> None:
    labels = {"alertname": "ModelAccuracyDrop", "severity": "critical", "job": "leafwatch"}
    assert routed_receivers(**labels, model_version="3", time_window="1h") == MODEL_PAGE
    assert routed_receivers(**labels) == PAGE  # no version named: nothing LeafWatch can undo
    assert routed_receivers(**labels, model_version="") == PAGE


@pytest.mark.parametrize("name", ["LowPredictionConfidence", "ModelEstimationGap"])
def test_a_warning_on_a_model_version_does_not_reach_the_leafwatch_webhook(name: str) -> None:
    labels = {"alertname": name, "severity": "warning", "job": "leafwatch", "model_version": "3"}
    assert routed_receivers(**labels) == WARNINGS_CHANNEL


def test_the_leafwatch_webhook_sends_the_admin_token_from_a_file() -> None:
    [receiver] = [r for r in load_config()["receivers"] if r["name"] == "leafwatch"]
    [webhook] = receiver["webhook_configs"]
    assert webhook["url"] == LEAFWATCH_WEBHOOK
    assert webhook["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": f"{SECRETS_DIR}leafwatch_admin_token",
    }


@pytest.mark.parametrize("severity", ["info", "page", "Critical", None])
def test_an_alert_without_a_known_severity_is_seen_in_the_warnings_channel(
    severity: str | None,
) -> None:
    labels = {"alertname": "SomethingNew", "job": "leafwatch"}
    if severity:
        labels["severity"] = severity
    assert routed_receivers(**labels) == WARNINGS_CHANNEL


def test_amtool_verification_fails_on_a_wrong_receiver() -> None:
    """The routing checks above can fail: amtool exits non-zero when the receivers differ."""
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={PAGE}",
        "alertname=HighLatency",
        "severity=warning",
    )
    assert result.returncode != 0


def hours(duration: str) -> float:
    """An Alertmanager duration such as 30s, 5m or 12h, in hours."""
    return float(duration[:-1]) * {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "d": 24.0}[duration[-1]]


def test_critical_pages_repeat_sooner_than_warnings_and_group_by_alert_severity_and_job() -> None:
    route = load_config()["route"]
    [critical] = [
        child for child in route["routes"] if child["matchers"] == ['severity="critical"']
    ]
    assert route["group_by"] == ["alertname", "severity", "job"]
    assert hours(critical["repeat_interval"]) < hours(route["repeat_interval"])
    assert hours(critical["group_wait"]) < hours(route["group_wait"])


def test_every_receiver_sends_resolved_notifications() -> None:
    for receiver in load_config()["receivers"]:
        integrations = [key for key in receiver if key.endswith("_configs")]
        assert integrations, receiver["name"]
        for key in integrations:
            for integration in receiver[key]:
                assert integration.get("send_resolved") is True, (receiver["name"], key)


def test_apidown_inhibits_exactly_the_alerts_an_outage_causes_on_the_same_job() -> None:
    rules = load_config()["inhibit_rules"]
    [rule] = [r for r in rules if r["source_matchers"] == ['alertname="APIDown"']]
    assert rule["equal"] == ["job"]
    for name in CAUSED_BY_OUTAGE:
        assert matches(rule["target_matchers"], {"alertname": name}), name
    for name in INDEPENDENT_OF_OUTAGE:
        assert not matches(rule["target_matchers"], {"alertname": name}), name


def test_no_secret_is_written_in_the_config() -> None:
    text = CONFIG.read_text()
    assert "hooks.slack.com/services" not in text
    secret_key = re.compile(r"password|secret|token|key|credential", re.IGNORECASE)
    for path, value in walk(load_config()):
        key = path[-1]
        if key.endswith("_file"):
            assert str(value).startswith(SECRETS_DIR), f"{'.'.join(path)}: {value}"
            continue
        where = ".".join(path)
        assert not secret_key.search(key) or "attributes" in path, f"secret in {where}"
        # Slack and webhook URLs are credentials; an SNS api_url is just the AWS endpoint.
        assert key not in {"api_url", "slack_api_url"} or "sns_configs" in path, where
        # LeafWatch's own address is no secret: its webhook authenticates with the admin token.
        webhook_url = key == "url" and "webhook_configs" in path
        assert not webhook_url or value == LEAFWATCH_WEBHOOK, where
        assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(value)), f"password in URL at {where}"
    assert "access_key" not in text  # SNS credentials come from the AWS default chain


def test_contacts_committed_are_reserved_examples() -> None:
    """Addresses and numbers are reserved for documentation, so no one's real contact is here."""
    text = CONFIG.read_text()
    addresses = re.findall(r"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)", text)
    assert addresses
    assert set(addresses) <= {"example.org", "example.com", "example.net"}
    hosts = re.findall(r"smtp_(?:smarthost|hello): *([\w.-]+)", text)
    assert hosts
    assert all(host.endswith(".example.org") for host in hosts)
    phones = [value for path, value in walk(load_config()) if path[-1] == "phone_number"]
    assert phones
    # North American numbers 555-0100 to 555-0199 are reserved for fiction.
    assert all(re.fullmatch(r"\+1\d{3}55501\d\d", phone) for phone in phones)


def test_every_template_string_in_the_config_renders(tmp_path: Path) -> None:
    """amtool check-config does not see a missing template; Alertmanager would fail at send time."""
    data = notification(FIRING, RESOLVED, summary="")
    templated = [(p, v) for p, v in walk(load_config()) if isinstance(v, str) and "{{" in v]
    assert len(templated) >= 20
    for path, value in templated:
        kind = "html" if path[-1] == "html" else "text"
        rendered = render(tmp_path, value, data, kind).strip()
        assert rendered, f"{'.'.join(path)} renders empty"
        assert "<no value>" not in rendered, f"{'.'.join(path)}: {rendered}"


def test_the_title_carries_status_count_alert_severity_and_job(tmp_path: Path) -> None:
    title = '{{ template "leafwatch.title" . }}'
    firing = notification(FIRING, {**FIRING, "fingerprint": "2"}, RESOLVED)
    assert render(tmp_path, title, firing) == "[FIRING:2] HighErrorRate (critical, leafwatch)"
    resolved = notification({**FIRING, **RESOLVED})
    assert render(tmp_path, title, resolved) == "[RESOLVED] HighErrorRate (critical, leafwatch)"


def test_the_email_lists_each_alert_with_what_on_call_needs(tmp_path: Path) -> None:
    data = notification(FIRING, RESOLVED)
    text = render(tmp_path, '{{ template "email.leafwatch.text" . }}', data)
    firing, resolved = text.split("Resolved (1):")
    for needed in [
        "Firing (1):",
        "12.5% of LeafWatch predictions fail",
        "(> 5%) & rising <fast>",
        "endpoint=/api/v1/predict, instance=leafwatch-1:8000, job=leafwatch, model_version=3",
        "since 2026-11-29 11:30 UTC",
        f"Runbook: {RUNBOOK}",
        "Source: http://prometheus.example.org:9090/graph",
    ]:
        assert needed in firing, needed
    assert "team=" not in text  # routing labels are noise to a reader
    assert "2% of health checks failed" in resolved
    assert "resolved 2026-11-29 11:50 UTC" in resolved
    silence = "http://alertmanager.example.org:9093/#/silences/new?filter="
    assert silence + "%7Balertname%3D%22HighErrorRate%22%2Cjob%3D%22leafwatch%22%2C" in text

    html = render(tmp_path, '{{ template "email.leafwatch.html" . }}', data, "html")
    assert "(&gt; 5%) &amp; rising &lt;fast&gt;" in html
    assert f'<a href="{RUNBOOK}">Runbook</a>' in html
    assert "<title>[FIRING:1] HighErrorRate (critical, leafwatch)</title>" in html


def test_slack_escapes_its_markup_and_links_the_runbook(tmp_path: Path) -> None:
    text = render(tmp_path, '{{ template "slack.leafwatch.text" . }}', notification(FIRING))
    assert "*12.5% of LeafWatch predictions fail*" in text
    assert "(&gt; 5%) &amp; rising &lt;fast&gt;" in text
    assert f"<{RUNBOOK}|runbook>" in text
    assert render(tmp_path, '{{ template "slack.leafwatch.color" . }}', notification(FIRING)) == (
        "danger"
    )
    resolved = notification({**FIRING, **RESOLVED})
    assert render(tmp_path, '{{ template "slack.leafwatch.color" . }}', resolved) == "good"


def test_pagerduty_incident_title_is_the_title_and_summary(tmp_path: Path) -> None:
    description = render(
        tmp_path, '{{ template "pagerduty.leafwatch.description" . }}', notification(FIRING)
    )
    assert description == (
        "[FIRING:1] HighErrorRate (critical, leafwatch): 12.5% of LeafWatch predictions fail"
    )


def test_sms_stays_one_plain_segment_even_with_a_long_summary(tmp_path: Path) -> None:
    long = alert("firing", "LeafWatch answers 5xx " + "on every route " * 20, alertname="APIDown")
    data = {
        **notification(long, {**long, "fingerprint": "2"}),
        "groupLabels": {"alertname": "APIDown"},
    }
    sms = render(tmp_path, '{{ template "sms.leafwatch.message" . }}', data)
    assert sms.startswith("LeafWatch FIRING APIDown x2: LeafWatch answers 5xx on every route")
    assert len(sms) <= 160
    assert sms.isascii()


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """The committed config in a real Alertmanager; upstreams point at a closed local port."""
    config = load_config()
    config["templates"] = [TEMPLATES]  # relative paths resolve against the config's directory
    closed = f"127.0.0.1:{free_port()}"
    config["global"]["smtp_smarthost"] = closed
    config["global"]["pagerduty_url"] = f"http://{closed}/"
    for receiver in config["receivers"]:
        for sns in receiver.get("sns_configs", []):
            sns["api_url"] = f"http://{closed}/"
    # The secret files are absent (as on a fresh host): Alertmanager must start all the same.
    overlay = tmp_path / "alertmanager.yml"
    overlay.write_text(yaml.safe_dump(config))
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "Alertmanager is missing: `make tools` installs prometheus-alertmanager"
    port = free_port()
    command = [
        binary,
        f"--config.file={overlay}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    url = f"http://127.0.0.1:{port}"
    with running(command, ready_url=f"{url}/-/ready", log=tmp_path / "alertmanager.log"):
        yield url


def test_a_running_alertmanager_hides_what_an_outage_and_a_page_make_redundant(
    alertmanager: str,
) -> None:
    def labels(name: str, severity: str, job: str = "leafwatch", **extra: str) -> dict[str, str]:
        return {"alertname": name, "severity": severity, "job": job, **extra}

    sent = [
        labels("APIDown", "critical", instance="leafwatch-1:8000"),
        labels("HighErrorRate", "critical"),
        labels("NoPredictions", "warning"),
        labels("HighErrorRate", "critical", job="other-service"),
        labels("DataDriftDetected", "warning"),
        labels("AvailabilityBudgetBurnFast", "critical", job="checkout"),
        labels("AvailabilityBudgetBurnSlow", "warning", job="checkout"),
        labels("LatencyBudgetBurnSlow", "warning", job="checkout"),
        labels("HostDiskSpaceLow", "critical", "node", instance="host-1", mountpoint="/"),
        labels("HostDiskSpaceLow", "warning", "node", instance="host-1", mountpoint="/"),
        labels("HostDiskSpaceLow", "warning", "node", instance="host-1", mountpoint="/data"),
    ]
    answer = httpx.post(f"{alertmanager}/api/v2/alerts", json=[{"labels": s} for s in sent])
    assert answer.status_code == 200, answer.text
    states = {
        tuple(sorted(a["labels"].items())): a["status"]["state"]
        for a in httpx.get(f"{alertmanager}/api/v2/alerts").json()
    }
    assert len(states) == len(sent)
    suppressed = {
        (s["alertname"], s["severity"], s["job"], s.get("mountpoint", ""))
        for s in sent
        if states[tuple(sorted(s.items()))] == "suppressed"
    }
    assert suppressed == {
        ("HighErrorRate", "critical", "leafwatch", ""),
        ("NoPredictions", "warning", "leafwatch", ""),
        ("AvailabilityBudgetBurnSlow", "warning", "checkout", ""),
        ("HostDiskSpaceLow", "warning", "node", "/"),
    }
