"""Prometheus's configuration and rules: promtool accepts them, unit tests cover every alert both
ways, every alert follows the team's contract, has a runbook, and uses only real metric names."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
UNIT_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOK_BASE = "https://github.com/leafwatch/leafwatch/blob/main/docs/runbooks/"

# The alerts and severities every part of the stack (Alertmanager routes, dashboards) relies on.
CONTRACT = {
    "APIDown": "critical",
    "HighErrorRate": "critical",
    "ModelAccuracyDrop": "critical",
    "ModelNotLoaded": "critical",
    "AvailabilityBudgetBurnFast": "critical",
    "LatencyBudgetBurnFast": "critical",
    "HostDiskSpaceLow": "critical",
    "HighLatency": "warning",
    "DataDriftDetected": "warning",
    "NoPredictions": "warning",
    "LowPredictionConfidence": "warning",
    "ModelEstimationGap": "warning",
    "RejectedUploadsSpike": "warning",
    "AvailabilityBudgetBurnSlow": "warning",
    "LatencyBudgetBurnSlow": "warning",
    "HostHighMemory": "warning",
    "HostHighCPU": "warning",
    "FaultInjectionActive": "warning",
    "SpoolNotDraining": "warning",
}
CONTRACT_RECORDS = {
    "job:api_requests:rate5m",
    "job:api_request_errors:ratio_rate5m",
    "job:api_request_latency_seconds:p50_5m",
    "job:api_request_latency_seconds:p95_5m",
    "job:api_request_latency_seconds:p99_5m",
}
RUNBOOK_SECTIONS = ("## What it means", "## How to check", "## How to fix")

PROMQL_STRING = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""")
LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)\b(?!\s*\()")
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
KEYWORDS |= {"group_left", "group_right", "inf", "nan", "Inf", "NaN"}
TEMPLATE_QUERY = re.compile(r'printf\s+"((?:[^"\\]|\\.)*)"')


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make tools` installs it (Debian package prometheus)"
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    """Every recording and alerting rule of the shipped rule files."""
    groups = [group for path in RULE_FILES for group in load(path)["groups"]]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def alert_cases() -> list[dict[str, Any]]:
    """Every `alert_rule_test` entry of the unit tests."""
    return [
        case
        for path in UNIT_TEST_FILES
        for test in load(path)["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def metric_names(promql: str) -> set[str]:
    """Metric names a PromQL expression selects: strings, matchers, ranges and label lists out."""
    text = PROMQL_STRING.sub('""', promql)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = LABEL_LISTS.sub(" ", text)
    return {name for name in IDENTIFIER.findall(text) if name not in KEYWORDS}


def documented_metrics() -> tuple[set[str], tuple[str, ...]]:
    """Names in docs/metrics.md's table (histograms with their series), and wildcard prefixes."""
    table = METRICS_DOC.read_text().split("<!-- metrics-table: start -->")[1]
    table = table.split("<!-- metrics-table: end -->")[0]
    names: set[str] = set()
    prefixes: list[str] = []
    for row in table.splitlines():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([^`]+)`", cells[0]):
            if name.endswith("*"):
                prefixes.append(name.rstrip("*"))
            elif cells[1] == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
            else:
                names.add(name)
    return names, tuple(prefixes)


def test_promtool_accepts_the_configuration_and_loads_every_rule_file() -> None:
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert RULE_FILES, "no rule file in deploy/prometheus/rules"
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_promtool_accepts_every_rule_file() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", UNIT_TEST_FILES, ids=lambda path: path.name)
def test_rule_unit_tests_pass(path: Path) -> None:
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_are_unit_tests() -> None:
    assert len(UNIT_TEST_FILES) >= 2, UNIT_TEST_FILES


def test_the_alerts_are_the_contract_list_with_its_severities() -> None:
    assert {name: rule["labels"]["severity"] for name, rule in alerts().items()} == CONTRACT
    names = [rule["alert"] for rule in rules() if "alert" in rule]
    assert len(names) == len(set(names)), "an alert name is defined twice"


def test_the_contract_recording_rules_exist_and_keep_the_job_label() -> None:
    records = {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}
    assert set(records) >= CONTRACT_RECORDS
    assert all(name.startswith("job:") for name in records)


def test_every_alert_has_team_summary_description_and_runbook() -> None:
    for name, rule in alerts().items():
        assert rule["labels"]["team"] == "ml-platform", name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        # Plain text: the end-to-end test and the receivers' templates read it as written.
        assert "{{" not in annotations["summary"], name


def test_every_runbook_url_names_a_runbook_with_its_three_sections() -> None:
    for name, rule in alerts().items():
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}{name}.md"
        runbook = RUNBOOKS / f"{name}.md"
        assert runbook.is_file(), f"{name} has no runbook at {runbook}"
        text = runbook.read_text()
        assert text.startswith(f"# {name}\n"), runbook
        for section in RUNBOOK_SECTIONS:
            assert section in text, f"{runbook} lacks {section!r}"
    assert {path.stem for path in RUNBOOKS.glob("*.md")} == set(CONTRACT)


def test_every_alert_is_tested_firing_and_silent() -> None:
    cases = alert_cases()
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert firing == set(CONTRACT), f"never shown firing: {set(CONTRACT) - firing}"
    assert silent == set(CONTRACT), f"never shown silent: {set(CONTRACT) - silent}"


def test_every_firing_case_checks_the_job_label_and_the_summary() -> None:
    """APIDown inhibits by equal `job`, so every alert must keep it."""
    rule_summaries = {name: rule["annotations"]["summary"] for name, rule in alerts().items()}
    for case in alert_cases():
        for alert in case.get("exp_alerts") or []:
            assert "job" in alert["exp_labels"], case["alertname"]
            assert alert["exp_annotations"]["summary"] == rule_summaries[case["alertname"]]


def test_the_unit_tests_check_the_contract_recording_rules() -> None:
    expressions = " ".join(
        check["expr"]
        for path in UNIT_TEST_FILES
        for test in load(path)["tests"]
        for check in test.get("promql_expr_test", [])
    )
    missing = {name for name in CONTRACT_RECORDS if name not in expressions}
    assert not missing, f"no promql_expr_test reads {missing}"


def test_rules_use_only_documented_metrics() -> None:
    documented, prefixes = documented_metrics()
    records = {rule["record"] for rule in rules() if "record" in rule}
    assert {"api_requests_total", "api_request_latency_seconds_bucket"} <= documented
    used: dict[str, set[str]] = {}
    for rule in rules():
        name = rule.get("record") or rule["alert"]
        queries = [rule["expr"]]
        for text in rule.get("annotations", {}).values():
            queries += [query.replace("%q", '""') for query in TEMPLATE_QUERY.findall(text)]
        for query in queries:
            for metric in metric_names(query):
                used.setdefault(metric, set()).add(name)
    unknown = {
        metric: sorted(names)
        for metric, names in used.items()
        if metric not in documented | records | {"up"}
        and not metric.startswith(("node_", *prefixes))
    }
    assert not unknown, f"metrics neither in docs/metrics.md nor recorded: {unknown}"
    # The regex finds names at all: a metric the rules certainly use is among them.
    assert {"api_injected_faults_total", "node_filesystem_avail_bytes"} <= set(used)


def test_metric_names_are_read_from_promql_without_labels_or_functions() -> None:
    promql = (
        'sum by (job, le) (rate(api_requests_total{endpoint!~"/metrics", status=~"5.."}[5m]))'
        " / on (job) group_left job:api_requests:rate5m > bool 1e-3 and absent(up)"
    )
    assert metric_names(promql) == {"api_requests_total", "job:api_requests:rate5m", "up"}


def test_rule_durations_are_plain_so_tests_can_scale_them() -> None:
    """The end-to-end test divides every `for:` and `[range]`; an offset would not scale."""
    for rule in rules():
        assert not re.search(r"\boffset\b", PROMQL_STRING.sub('""', rule["expr"])), rule


def test_prometheus_scrapes_every_part_of_the_stack_without_secrets() -> None:
    config = load(CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"leafwatch", "node-exporter", "alertmanager", "prometheus"}
    assert jobs["leafwatch"]["dns_sd_configs"] == [
        {"names": ["leafwatch"], "type": "A", "port": 8001, "refresh_interval": "30s"}
    ]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]
    assert config["rule_files"] == ["rules/*.yml"]
    text = CONFIG.read_text()
    assert not re.search(r"^\s*(credentials|bearer_token|password):", text, re.MULTILINE)
