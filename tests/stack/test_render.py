"""The shipped Prometheus and Alertmanager configurations, rewritten for this machine."""

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest

from leafwatch.config import Settings
from leafwatch.stack import (
    AlertmanagerOverrides,
    StackError,
    StackOptions,
    load_yaml,
    render_alertmanager_config,
    render_prometheus_config,
    scale_duration,
    secret_files,
    set_dotted,
    shipped_rule_files,
    write_stack_files,
)
from tests.stack import DEPLOY

SHIPPED_PROMETHEUS: dict[str, Any] = {
    "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
    "alerting": {
        "alertmanagers": [
            {"dns_sd_configs": [{"names": ["alertmanager"], "type": "A", "port": 9093}]}
        ]
    },
    "rule_files": ["rules/*.yml"],
    "scrape_configs": [
        {"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]},
        {
            "job_name": "leafwatch",
            "metrics_path": "/metrics",
            "scrape_interval": "10s",
            "dns_sd_configs": [{"names": ["leafwatch"], "type": "A", "port": 8000}],
            "authorization": {"credentials_file": "/etc/prometheus/secrets/metrics_token"},
            "relabel_configs": [{"target_label": "service", "replacement": "leafwatch"}],
        },
        {"job_name": "node-exporter", "static_configs": [{"targets": ["node-exporter:9100"]}]},
        {"job_name": "alertmanager", "static_configs": [{"targets": ["alertmanager:9093"]}]},
        {"job_name": "loki", "static_configs": [{"targets": ["loki:3100"]}]},
    ],
}


def render(**options: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "leafwatch_targets": ["127.0.0.1:8000"],
        "prometheus_address": "127.0.0.1:9090",
        "alertmanager_address": "127.0.0.1:9093",
        "rule_files": [Path("/abs/rules/leafwatch.yml")],
        **options,
    }
    return render_prometheus_config(SHIPPED_PROMETHEUS, **arguments)


def jobs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def targets(job: dict[str, Any]) -> list[str]:
    assert set(job) & {key for key in job if key.endswith("_sd_configs")} == set()
    return [target for group in job["static_configs"] for target in group["targets"]]


def test_leafwatch_replicas_are_scraped_statically_with_the_job_settings_kept() -> None:
    original = copy.deepcopy(SHIPPED_PROMETHEUS)
    leafwatch = jobs(render(leafwatch_targets=["127.0.0.1:8001", "127.0.0.1:8002"]))["leafwatch"]
    assert targets(leafwatch) == ["127.0.0.1:8001", "127.0.0.1:8002"]
    assert leafwatch["metrics_path"] == "/metrics"
    assert leafwatch["scrape_interval"] == "10s"
    assert leafwatch["relabel_configs"] == original["scrape_configs"][1]["relabel_configs"]
    assert original == SHIPPED_PROMETHEUS, "the shipped document must not change"


def test_jobs_point_at_local_addresses_and_container_only_jobs_are_left_out() -> None:
    config = render(node_exporter="127.0.0.1:9100")
    assert list(jobs(config)) == ["leafwatch", "node-exporter", "alertmanager", "prometheus"]
    assert targets(jobs(config)["node-exporter"]) == ["127.0.0.1:9100"]
    assert targets(jobs(config)["alertmanager"]) == ["127.0.0.1:9093"]
    assert targets(jobs(config)["prometheus"]) == ["127.0.0.1:9090"]
    assert [targets(entry) for entry in config["alerting"]["alertmanagers"]] == [["127.0.0.1:9093"]]


def test_node_exporter_is_dropped_without_a_target() -> None:
    assert "node-exporter" not in jobs(render())


def test_rule_files_are_the_given_absolute_paths() -> None:
    assert render()["rule_files"] == ["/abs/rules/leafwatch.yml"]


def test_interval_overrides_reach_every_job() -> None:
    config = render(scrape_interval="1s", evaluation_interval="2s")
    assert config["global"]["scrape_interval"] == "1s"
    assert config["global"]["evaluation_interval"] == "2s"
    assert "scrape_interval" not in jobs(config)["leafwatch"], "a job's own interval would win"
    assert config["global"]["scrape_timeout"] == "1s", "a timeout over the interval is refused"
    assert render(scrape_interval="30s")["global"].get("scrape_timeout") is None


def test_the_leafwatch_token_file_is_the_given_one_or_none(tmp_path: Path) -> None:
    assert "authorization" not in jobs(render())["leafwatch"]
    token = tmp_path / "token"
    leafwatch = jobs(render(leafwatch_token_file=token))["leafwatch"]
    assert leafwatch["authorization"] == {"type": "Bearer", "credentials_file": str(token)}


def test_remote_write_is_left_out_unless_a_local_address_is_given() -> None:
    # The shipped stack writes to VictoriaMetrics by its container name; the local stack has none.
    shipped = {
        **SHIPPED_PROMETHEUS,
        "remote_write": [
            {
                "name": "victoriametrics",
                "url": "http://victoriametrics:8428/api/v1/write",
                "queue_config": {"batch_send_deadline": "5s"},
            }
        ],
    }
    arguments: dict[str, Any] = {
        "leafwatch_targets": ["127.0.0.1:8000"],
        "prometheus_address": "127.0.0.1:9090",
        "alertmanager_address": "127.0.0.1:9093",
        "rule_files": [],
    }
    assert "remote_write" not in render_prometheus_config(shipped, **arguments)
    url = "http://127.0.0.1:18428/api/v1/write"
    config = render_prometheus_config(shipped, **arguments, remote_write_url=url)
    [write] = config["remote_write"]
    assert write == {**shipped["remote_write"][0], "url": url}
    assert shipped["remote_write"][0]["url"] == "http://victoriametrics:8428/api/v1/write"
    assert "remote_write" not in render(), "nothing shipped, nothing given: none"
    assert render(remote_write_url=url)["remote_write"] == [{"url": url}]


def test_the_shipped_remote_write_is_dropped_from_the_local_stack(tmp_path: Path) -> None:
    assert load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["remote_write"]
    files = write_stack_files(options(tmp_path), prometheus_port=19090, alertmanager_port=19093)
    assert "remote_write" not in load_yaml(files.prometheus)


def test_the_local_stack_scrapes_a_default_leafwatch_serve_not_the_compose_replicas(
    tmp_path: Path,
) -> None:
    shipped = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    [compose_job] = [job for job in shipped["scrape_configs"] if job["job_name"] == "leafwatch"]
    files = write_stack_files(options(tmp_path), prometheus_port=19090, alertmanager_port=19093)
    leafwatch = jobs(load_yaml(files.prometheus))["leafwatch"]
    # `leafwatch serve` with no settings has no metrics port: /metrics is on its API port.
    fields = Settings.model_fields
    assert fields["metrics_port"].default is None
    assert targets(leafwatch) == [f"{fields['host'].default}:{fields['port'].default}"]
    assert leafwatch["metrics_path"] == compose_job["metrics_path"]


def test_a_local_prometheus_needs_a_leafwatch_target() -> None:
    with pytest.raises(ValueError, match="at least one LeafWatch target"):
        render(leafwatch_targets=[])


def test_rule_file_globs_expand_against_the_configuration_directory(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    for name in ("b.yml", "a.yml", "notes.txt"):
        (tmp_path / "rules" / name).write_text("groups: []\n")
    files = shipped_rule_files({"rule_files": ["rules/*.yml"]}, tmp_path)
    assert files == [tmp_path / "rules" / "a.yml", tmp_path / "rules" / "b.yml"]


SHIPPED_ALERTMANAGER: dict[str, Any] = {
    "global": {
        "smtp_smarthost": "smtp.example.org:587",
        "smtp_auth_password_file": "/etc/alertmanager/secrets/smtp_password",
        "smtp_require_tls": True,
        "pagerduty_url": "https://events.pagerduty.com/v2/enqueue",
    },
    "templates": ["templates/*.tmpl"],
    "route": {
        "receiver": "slack",
        "group_wait": "30s",
        "routes": [{"matchers": ['severity="critical"'], "receiver": "page", "group_wait": "10s"}],
    },
    "receivers": [
        {"name": "slack", "slack_configs": [{"api_url_file": "secrets/slack_url"}]},
        {
            "name": "page",
            "email_configs": [{"to": "oncall@example.org", "smarthost": "other.example.org:25"}],
            "pagerduty_configs": [{"routing_key_file": "/etc/alertmanager/secrets/pd_key"}],
            "sns_configs": [{"phone_number": "+15555550100", "sigv4": {"region": "us-east-1"}}],
        },
    ],
}


def render_am(**overrides: Any) -> dict[str, Any]:
    return render_alertmanager_config(
        SHIPPED_ALERTMANAGER,
        config_dir=Path("/deploy/alertmanager"),
        overrides=AlertmanagerOverrides(**overrides),
    )


def test_templates_and_secret_files_become_absolute_paths() -> None:
    config = render_am()
    assert config["templates"] == ["/deploy/alertmanager/templates/*.tmpl"]
    assert config["receivers"][0]["slack_configs"][0]["api_url_file"] == (
        "/deploy/alertmanager/secrets/slack_url"
    )
    assert config["global"]["smtp_auth_password_file"] == "/etc/alertmanager/secrets/smtp_password"


def test_a_secrets_dir_is_where_every_secret_file_is_read(tmp_path: Path) -> None:
    config = render_am(secrets_dir=tmp_path)
    assert sorted(map(str, secret_files(config))) == sorted(
        str(tmp_path / name) for name in ("smtp_password", "slack_url", "pd_key")
    )


def test_local_receivers_replace_the_shipped_ones_everywhere() -> None:
    original = copy.deepcopy(SHIPPED_ALERTMANAGER)
    config = render_am(
        smtp_smarthost="127.0.0.1:2525",
        smtp_require_tls=False,
        slack_api_url="http://127.0.0.1:1/slack",
        pagerduty_url="http://127.0.0.1:1/pagerduty",
        sns_api_url="http://127.0.0.1:1/sns",
    )
    assert config["global"]["smtp_smarthost"] == "127.0.0.1:2525"
    assert config["global"]["smtp_require_tls"] is False
    assert config["global"]["slack_api_url"] == "http://127.0.0.1:1/slack"
    assert config["global"]["pagerduty_url"] == "http://127.0.0.1:1/pagerduty"
    slack = config["receivers"][0]["slack_configs"][0]
    assert slack == {"api_url": "http://127.0.0.1:1/slack"}, "the file would win over the URL"
    page = config["receivers"][1]
    assert page["email_configs"][0]["smarthost"] == "127.0.0.1:2525"
    assert page["email_configs"][0]["require_tls"] is False
    assert page["pagerduty_configs"][0]["url"] == "http://127.0.0.1:1/pagerduty"
    assert page["sns_configs"][0]["api_url"] == "http://127.0.0.1:1/sns"
    assert original == SHIPPED_ALERTMANAGER, "the shipped document must not change"


def test_the_leafwatch_webhook_gets_the_local_url_and_admin_token_file(tmp_path: Path) -> None:
    webhook = {
        "url": "http://leafwatch:8000/api/v1/alerts",
        "http_config": {
            "authorization": {
                "type": "Bearer",
                "credentials_file": "/etc/alertmanager/secrets/leafwatch_admin_token",
            }
        },
    }
    shipped = {"receivers": [{"name": "leafwatch", "webhook_configs": [webhook]}]}
    token = tmp_path / "admin-token"

    def render(**overrides: Any) -> dict[str, Any]:
        config = render_alertmanager_config(
            shipped, config_dir=tmp_path, overrides=AlertmanagerOverrides(**overrides)
        )
        [rendered] = config["receivers"][0]["webhook_configs"]
        return {"url": rendered["url"], **rendered["http_config"]["authorization"]}

    local = "http://127.0.0.1:8001/api/v1/alerts"
    assert render(leafwatch_webhook_url=local, leafwatch_admin_token_file=token) == {
        "url": local,
        "type": "Bearer",
        "credentials_file": str(token),
    }
    # Without a token file, the token is looked up in the secrets directory like the others.
    assert render(secrets_dir=tmp_path)["credentials_file"] == str(
        tmp_path / "leafwatch_admin_token"
    )
    assert render()["url"] == webhook["url"]


def test_the_local_alertmanager_calls_the_first_leafwatch_watched(tmp_path: Path) -> None:
    files = write_stack_files(
        options(tmp_path, leafwatch=("127.0.0.1:8123", "127.0.0.1:8124")),
        prometheus_port=19090,
        alertmanager_port=19093,
    )
    [receiver] = [r for r in load_yaml(files.alertmanager)["receivers"] if r["name"] == "leafwatch"]
    assert receiver["webhook_configs"][0]["url"] == "http://127.0.0.1:8123/api/v1/alerts"


def test_timings_apply_to_the_root_and_every_route_that_sets_them() -> None:
    config = render_am(group_wait="1s", group_interval="2s", repeat_interval="1m")
    route = config["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "1s",
        "2s",
        "1m",
    )
    assert route["routes"][0]["group_wait"] == "1s"
    assert "group_interval" not in route["routes"][0], "unset, it inherits the root's"


def test_a_malformed_timing_is_refused_before_alertmanager_sees_it() -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        render_am(group_wait="soon")


def test_dotted_values_are_set_last() -> None:
    config = render_am(
        smtp_smarthost="127.0.0.1:2525",
        values={"global.smtp_smarthost": "127.0.0.1:2526", "receivers.1.email_configs.0.to": "x"},
    )
    assert config["global"]["smtp_smarthost"] == "127.0.0.1:2526"
    assert config["receivers"][1]["email_configs"][0]["to"] == "x"


def test_set_dotted_creates_missing_mappings() -> None:
    document: dict[str, Any] = {"a": [{"b": 1}]}
    set_dotted(document, "a.0.c.d", 2)
    set_dotted(document, "e", 3)
    assert document == {"a": [{"b": 1, "c": {"d": 2}}], "e": 3}


def options(tmp_path: Path, **changes: Any) -> StackOptions:
    return StackOptions(deploy_dir=DEPLOY, data_dir=tmp_path / "data", **changes)


def test_the_written_configurations_pass_promtool_and_amtool(tmp_path: Path) -> None:
    files = write_stack_files(
        options(tmp_path, node_exporter="127.0.0.1:9100"),
        prometheus_port=19090,
        alertmanager_port=19093,
    )
    for command in (
        ["promtool", "check", "config", str(files.prometheus)],
        ["amtool", "check-config", str(files.alertmanager)],
    ):
        check = subprocess.run(command, capture_output=True, text=True)
        assert check.returncode == 0, f"{command}: {check.stdout}{check.stderr}"
    config = load_yaml(files.prometheus)
    assert targets(jobs(config)["alertmanager"]) == ["127.0.0.1:19093"]
    assert all(Path(path).is_absolute() and Path(path).is_file() for path in config["rule_files"])


def test_a_time_scale_writes_scaled_rules_and_shorter_intervals(tmp_path: Path) -> None:
    files = write_stack_files(
        options(tmp_path, time_scale=60), prometheus_port=19090, alertmanager_port=19093
    )
    assert files.rule_files, "scaled copies of the shipped rules"
    assert all(path.parent == tmp_path / "data" / "rules-scaled" for path in files.rule_files)
    config = load_yaml(files.prometheus)
    assert config["rule_files"] == [str(path) for path in files.rule_files]
    shipped = load_yaml(options(tmp_path).prometheus_source).get("global") or {}
    for key in ("scrape_interval", "evaluation_interval"):
        assert config["global"][key] == scale_duration(shipped.get(key, "1m"), 60)
    check = subprocess.run(
        ["promtool", "check", "config", str(files.prometheus)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_missing_configuration_and_a_slowing_time_scale_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"prometheus\.yml not found: --deploy-dir"):
        write_stack_files(
            StackOptions(deploy_dir=tmp_path / "nowhere", data_dir=tmp_path / "data"),
            prometheus_port=1,
            alertmanager_port=2,
        )
    with pytest.raises(StackError, match="below 1"):
        write_stack_files(options(tmp_path, time_scale=0.5), prometheus_port=1, alertmanager_port=2)
