"""The shipped Prometheus and Alertmanager configurations, rewritten for a run on this machine."""

import copy
import glob
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leafwatch.stack.durations import parse_duration

LEAFWATCH_JOB = "leafwatch"
NODE_EXPORTER_JOB = "node-exporter"
ALERTMANAGER_JOB = "alertmanager"
PROMETHEUS_JOB = "prometheus"
_LOCAL_JOBS = (LEAFWATCH_JOB, NODE_EXPORTER_JOB, ALERTMANAGER_JOB, PROMETHEUS_JOB)
_AUTH_KEYS = ("authorization", "bearer_token", "bearer_token_file", "basic_auth", "oauth2")
# The receiver that posts alerts to LeafWatch's own webhook, and the webhook's path.
LEAFWATCH_RECEIVER = "leafwatch"
LEAFWATCH_WEBHOOK_PATH = "/api/v1/alerts"


def shipped_rule_files(config: Mapping[str, Any], config_dir: Path) -> list[Path]:
    """The rule files a Prometheus configuration names, globs expanded against its directory."""
    files: list[Path] = []
    for pattern in config.get("rule_files") or []:
        matches = sorted(glob.glob(str(config_dir / pattern)))
        files.extend(Path(match).resolve() for match in matches)
    return files


def render_prometheus_config(
    shipped: Mapping[str, Any],
    *,
    leafwatch_targets: Sequence[str],
    prometheus_address: str,
    alertmanager_address: str,
    rule_files: Sequence[Path],
    node_exporter: str | None = None,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
    leafwatch_token_file: Path | None = None,
    remote_write_url: str | None = None,
) -> dict[str, Any]:
    """The shipped configuration with its jobs and Alertmanager pointed at local addresses.

    Jobs other than leafwatch, node-exporter, alertmanager and prometheus find containers by name,
    which do not exist on this machine, so they are left out; so is node-exporter without a target.
    The shipped `remote_write` (to the stack's VictoriaMetrics) goes to `remote_write_url`, with
    its other settings kept, or is left out without one.
    """
    if not leafwatch_targets:
        raise ValueError("a local Prometheus needs at least one LeafWatch target")
    config = copy.deepcopy(dict(shipped))
    config["global"] = dict(config.get("global") or {})
    if scrape_interval is not None:
        config["global"]["scrape_interval"] = scrape_interval
        # Prometheus refuses a timeout longer than the interval (its default timeout is 10s).
        timeout = str(config["global"].get("scrape_timeout", "10s"))
        if parse_duration(timeout) > parse_duration(scrape_interval):
            config["global"]["scrape_timeout"] = scrape_interval
    if evaluation_interval is not None:
        config["global"]["evaluation_interval"] = evaluation_interval
    targets = {
        LEAFWATCH_JOB: list(leafwatch_targets),
        NODE_EXPORTER_JOB: [node_exporter] if node_exporter else [],
        ALERTMANAGER_JOB: [alertmanager_address],
        PROMETHEUS_JOB: [prometheus_address],
    }
    jobs = {job["job_name"]: job for job in config.get("scrape_configs") or []}
    scrape_configs = []
    for name in _LOCAL_JOBS:
        if not targets[name]:
            continue
        job = jobs.get(name, {"job_name": name})
        if scrape_interval is not None:
            # A job's own interval would otherwise win over the override.
            job.pop("scrape_interval", None)
            job.pop("scrape_timeout", None)
        scrape_configs.append(_static(job, targets[name]))
    leafwatch = scrape_configs[0]
    # The shipped job reads its token where the container keeps it; here it is given, or none.
    for key in _AUTH_KEYS:
        leafwatch.pop(key, None)
    if leafwatch_token_file is not None:
        leafwatch["authorization"] = {
            "type": "Bearer",
            "credentials_file": str(leafwatch_token_file.resolve()),
        }
    config["scrape_configs"] = scrape_configs
    alerting = dict(config.get("alerting") or {})
    managers = alerting.get("alertmanagers") or [{}]
    alerting["alertmanagers"] = [_static(managers[0], [alertmanager_address])]
    config["alerting"] = alerting
    config["rule_files"] = [str(path) for path in rule_files]
    # No VictoriaMetrics runs here unless given: Prometheus would retry the container name forever.
    writes = config.pop("remote_write", None) or [{}]
    if remote_write_url is not None:
        config["remote_write"] = [{**writes[0], "url": remote_write_url}]
    return config


def _static(section: Mapping[str, Any], targets: list[str]) -> dict[str, Any]:
    """A scrape job or Alertmanager entry that finds `targets` statically, not by discovery."""
    kept = {
        key: value
        for key, value in section.items()
        if not key.endswith("_sd_configs") and key != "static_configs"
    }
    return {**kept, "static_configs": [{"targets": targets}]}


@dataclass(frozen=True)
class AlertmanagerOverrides:
    """What changes in the shipped Alertmanager configuration for a local run; None keeps it."""

    smtp_smarthost: str | None = None
    smtp_require_tls: bool | None = None
    slack_api_url: str | None = None
    pagerduty_url: str | None = None
    sns_api_url: str | None = None
    # Each `*_file` (secrets, TLS files) is looked up by its file name in this directory.
    secrets_dir: Path | None = None
    group_wait: str | None = None
    group_interval: str | None = None
    repeat_interval: str | None = None
    # LeafWatch's webhook: its full URL, and the admin token file it is called with.
    leafwatch_webhook_url: str | None = None
    leafwatch_admin_token_file: Path | None = None
    # Dotted keys, applied last: {"global.smtp_from": "...", "route.routes.0.receiver": "..."}.
    values: Mapping[str, Any] = field(default_factory=dict)


def render_alertmanager_config(
    shipped: Mapping[str, Any], *, config_dir: Path, overrides: AlertmanagerOverrides
) -> dict[str, Any]:
    """The shipped configuration with local receivers, secrets and timings; paths made absolute."""
    config = copy.deepcopy(dict(shipped))
    # Alertmanager resolves relative paths against the configuration's own directory, and the
    # rendered file lives elsewhere.
    config["templates"] = [str(config_dir / pattern) for pattern in config.get("templates") or []]
    for section, key in _file_keys(config):
        path = Path(section[key])
        if overrides.secrets_dir is not None:
            path = overrides.secrets_dir.resolve() / path.name
        section[key] = str((config_dir / path).resolve())
    receivers = (
        ("smtp_smarthost", "email_configs", "smarthost", overrides.smtp_smarthost),
        ("smtp_require_tls", "email_configs", "require_tls", overrides.smtp_require_tls),
        ("slack_api_url", "slack_configs", "api_url", overrides.slack_api_url),
        ("pagerduty_url", "pagerduty_configs", "url", overrides.pagerduty_url),
        (None, "sns_configs", "api_url", overrides.sns_api_url),
    )
    for global_key, kind, key, value in receivers:
        if value is not None:
            _set_everywhere(config, global_key, kind, key, value)
    _point_leafwatch_webhook(config, overrides)
    timings = {
        "group_wait": overrides.group_wait,
        "group_interval": overrides.group_interval,
        "repeat_interval": overrides.repeat_interval,
    }
    for key, value in timings.items():
        if value is not None:
            parse_duration(value)  # a malformed duration fails here, not in Alertmanager
            config.setdefault("route", {})[key] = value
            for route in _routes(config["route"]):
                if key in route:
                    route[key] = value
    for dotted, value in overrides.values.items():
        set_dotted(config, dotted, value)
    return config


def _point_leafwatch_webhook(config: dict[str, Any], overrides: AlertmanagerOverrides) -> None:
    """Send the leafwatch receiver's alerts to the given URL, with the given token file."""
    for receiver in config.get("receivers") or []:
        if receiver.get("name") != LEAFWATCH_RECEIVER:
            continue
        for webhook in receiver.get("webhook_configs") or []:
            if overrides.leafwatch_webhook_url is not None:
                webhook["url"] = overrides.leafwatch_webhook_url
            if overrides.leafwatch_admin_token_file is not None:
                webhook.setdefault("http_config", {})["authorization"] = {
                    "type": "Bearer",
                    "credentials_file": str(overrides.leafwatch_admin_token_file.resolve()),
                }


def secret_files(config: Mapping[str, Any]) -> list[Path]:
    """Every file an Alertmanager configuration reads a secret or TLS file from."""
    return [Path(section[key]) for section, key in _file_keys(config)]


def set_dotted(document: Any, dotted: str, value: Any) -> None:
    """Set `a.b.0.c` in nested mappings and lists, creating missing mappings on the way."""
    *path, last = dotted.split(".")
    node = document
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _set_everywhere(
    config: dict[str, Any], global_key: str | None, kind: str, key: str, value: Any
) -> None:
    """Set a global default and the same setting in every receiver config of one kind."""
    if global_key is not None:
        config.setdefault("global", {})[global_key] = value
        config["global"].pop(f"{global_key}_file", None)
    for receiver in config.get("receivers") or []:
        for entry in receiver.get(kind) or []:
            entry[key] = value
            entry.pop(f"{key}_file", None)


def _file_keys(node: Any) -> Iterator[tuple[dict[str, Any], str]]:
    """(mapping, key) for every string value whose key ends in `_file`, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_file") and isinstance(value, str):
                yield node, key
            else:
                yield from _file_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _file_keys(item)


def _routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A route and every route below it."""
    yield route
    for child in route.get("routes") or []:
        yield from _routes(child)
