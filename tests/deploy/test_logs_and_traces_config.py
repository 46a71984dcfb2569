"""The Loki, Alloy and Grafana configuration ships logs sanely and links them to traces."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
LOKI = DEPLOY / "loki" / "loki.yaml"
ALLOY = DEPLOY / "alloy" / "config.alloy"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
DOC = DEPLOY / "logs-and-traces.md"

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
# Unbounded values: one label value each would make one Loki stream each.
PER_REQUEST_FIELDS = {"trace_id", "span_id", "request_id", "user_id", "prediction_id"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def datasources() -> dict[str, dict[str, Any]]:
    return {source["uid"]: source for source in load_yaml(DATASOURCES)["datasources"]}


def log_line(compact: bool, **fields: object) -> str:
    """A request's log line as structlog's JSON renderer writes it (json.dumps or compact)."""
    event = {
        "timestamp": "2026-11-29T11:30:00.123456Z",
        "level": "info",
        "logger": "leafwatch.api.predict",
        "event": "request",
        "request_id": "9f1c2b7e5d3a4c8e9b0a1f2e3d4c5b6a",  # 32 hex too, like a trace id
        "span_id": "00f067aa0ba902b7",
        "method": "POST",
        "route": "/api/v1/predict",
        "status": 200,
        "duration_ms": 41.7,
        **fields,
    }
    return json.dumps(event, separators=(",", ":") if compact else None)


def alloy_block(text: str, header: str) -> str:
    """The body of the first Alloy block that starts with `header`, braces balanced."""
    start = text.index("{", text.index(header))
    depth = 0
    for end in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            return text[start + 1 : end]
    raise AssertionError(f"unbalanced braces after {header!r} in {ALLOY}")


def alloy_keys(body: str) -> set[str]:
    """The attribute names assigned in an Alloy block body, comments removed."""
    code = re.sub(r"//[^\n]*", "", body)
    return set(re.findall(r'"?([A-Za-z_][A-Za-z0-9_]*)"?\s*=(?!=)', code))


def test_yaml_files_parse() -> None:
    assert isinstance(load_yaml(LOKI), dict)
    assert load_yaml(DATASOURCES)["apiVersion"] == 1


def test_loki_keeps_tsdb_v13_with_compactor_retention_and_structured_metadata() -> None:
    config = load_yaml(LOKI)
    [period] = config["schema_config"]["configs"]
    assert (period["store"], period["schema"], period["index"]["period"]) == ("tsdb", "v13", "24h")
    compactor = config["compactor"]
    assert compactor["retention_enabled"] is True
    assert compactor["delete_request_store"] == "filesystem"
    limits = config["limits_config"]
    assert limits["retention_period"] == limits["max_query_lookback"]
    assert limits["allow_structured_metadata"] is True  # Alloy sends trace_id there


@pytest.mark.parametrize("compact", [False, True])
def test_derived_field_regex_extracts_the_trace_id_from_a_log_line(compact: bool) -> None:
    [field] = datasources()["loki"]["jsonData"]["derivedFields"]
    pattern = re.compile(field["matcherRegex"])
    assert pattern.groups == 1  # Grafana links the one capture group
    match = pattern.search(log_line(compact, trace_id=TRACE_ID))
    assert match is not None
    assert match.group(1) == TRACE_ID


@pytest.mark.parametrize("line", [log_line(False), log_line(True), log_line(False, trace_id=None)])
def test_derived_field_regex_finds_nothing_in_a_line_without_a_trace_id(line: str) -> None:
    [field] = datasources()["loki"]["jsonData"]["derivedFields"]
    assert re.search(field["matcherRegex"], line) is None


def test_derived_field_regex_stays_in_the_syntax_go_and_javascript_share() -> None:
    # No lookaround, named groups, backreferences or inline flags: RE2 or JS would differ.
    [field] = datasources()["loki"]["jsonData"]["derivedFields"]
    assert not re.search(r"\(\?|\\[1-9]|\\[AZz]", field["matcherRegex"])


def test_alloy_makes_no_per_request_identifier_a_label() -> None:
    text = ALLOY.read_text()
    labels = alloy_keys(alloy_block(alloy_block(text, "stage.labels"), "values"))
    labels |= alloy_keys(alloy_block(text, "path_targets"))
    assert labels == {"__path__", "service", "environment", "level", "logger"}
    assert not labels & PER_REQUEST_FIELDS
    metadata = alloy_keys(alloy_block(alloy_block(text, "stage.structured_metadata"), "values"))
    assert {"trace_id", "request_id"} <= metadata


def test_alloy_takes_the_entry_time_from_the_line() -> None:
    text = ALLOY.read_text()
    assert "timestamp" in alloy_keys(alloy_block(alloy_block(text, "stage.json"), "expressions"))
    timestamp = alloy_block(text, "stage.timestamp")
    assert re.search(r'source\s*=\s*"timestamp"', timestamp)
    assert re.search(r'format\s*=\s*"RFC3339Nano"', timestamp)


def test_every_alloy_environment_variable_has_a_default() -> None:
    text = ALLOY.read_text()
    variables = re.findall(r'sys\.env\("([A-Z_]+)"\)', text)
    assert {"LEAFWATCH_LOG_FILE", "LOKI_URL", "LEAFWATCH_ENVIRONMENT"} <= set(variables)
    for name in variables:
        assert re.search(rf'coalesce\(sys\.env\("{name}"\),\s*"[^"]+"\)', text), name


def test_every_referenced_datasource_uid_exists() -> None:
    sources = datasources()
    assert len(sources) == len(load_yaml(DATASOURCES)["datasources"])  # uids are unique
    prometheus, loki, jaeger = sources["prometheus"], sources["loki"], sources["jaeger"]
    [exemplar] = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert exemplar["name"] == "trace_id"  # the exemplar label the service's histogram carries
    references = [
        exemplar["datasourceUid"],
        *(field["datasourceUid"] for field in loki["jsonData"]["derivedFields"]),
        jaeger["jsonData"]["tracesToLogsV2"]["datasourceUid"],
    ]
    assert references == ["jaeger", "jaeger", "loki"]
    assert set(references) <= sources.keys()


def test_traces_link_to_the_log_lines_alloy_labels() -> None:
    link = datasources()["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert link["filterByTraceID"] is True
    assert link["customQuery"] is True
    assert link["query"].startswith('{service="leafwatch"}')
    targets = alloy_block(ALLOY.read_text(), "path_targets")
    assert re.search(r'\bservice\s*=\s*"leafwatch"', targets)  # the label Alloy sets
    assert "${__trace.traceId}" in link["query"]


def test_grafana_variables_are_escaped_from_environment_expansion() -> None:
    # Grafana expands $NAME and ${NAME} in provisioning files; "$$" keeps a literal "$".
    text = DATASOURCES.read_text()
    assert "${__" in text
    assert not re.search(r"(?<!\$)\$\{__", text)


@pytest.mark.parametrize("path", [LOKI, ALLOY, DATASOURCES, DOC], ids=lambda path: path.name)
def test_no_unpinned_image_and_no_secret(path: Path) -> None:
    text = path.read_text()
    assert ":latest" not in text
    assert not re.search(r"(?i)(password|secret|token|api_?key)\w*\s*[:=]\s*\S", text)
    assert "secureJsonData" not in text


def test_documented_images_are_pinned_to_a_version() -> None:
    images = re.findall(r"`((?:grafana|jaegertracing)/[a-z]+):([^`]+)`", DOC.read_text())
    assert {name for name, _ in images} >= {
        "grafana/loki",
        "grafana/alloy",
        "grafana/grafana",
        "jaegertracing/jaeger",
    }
    for name, tag in images:
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}:{tag}"
