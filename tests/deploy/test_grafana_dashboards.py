"""The Grafana dashboards: well formed, linked, provisioned, and built on LeafWatch's metrics."""

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
RULES = DEPLOY / "prometheus" / "rules"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
COMPOSE = DEPLOY / "docker-compose.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"

TITLES = {
    "api-overview.json": "LeafWatch / API overview",
    "model-performance.json": "LeafWatch / Model performance",
    "drift-and-input-quality.json": "LeafWatch / Data drift and input quality",
    "system-health.json": "LeafWatch / System health",
    "usage-analytics.json": "LeafWatch / Usage analytics",
}
# The panels of the seed's two dashboards (ENHANCEMENT_5_MONITORING.md, Phase 3), kept by title.
SEED_PANELS = {
    "api-overview.json": {
        "Request Rate",
        "Error Rate",
        "Average Response Time",
        "Active Requests",
        "Predictions by Class",
        "Model Accuracy",
    },
    "model-performance.json": {
        "Inference Latency (P95)",
        "Predictions per Second",
        "Feedback Rate",
        "Accuracy by Class",
        "Correct vs Incorrect Predictions",
    },
}
# No deprecated `graph` panel; text and logs panels show no number, rows only group.
DATA_PANELS = {"timeseries", "stat", "gauge", "piechart", "table", "bargauge"}
UNITLESS_PANELS = {"text", "logs", "row"}
# What Grafana would put in place of its interval variables; only their syntax matters here.
STATIC_INTERVALS = {"__rate_interval": "1m", "__interval": "30s", "__range": "6h"}
COUNTER_SUFFIXES = ("_total", "_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a dashboard: a panel target or a template variable's query."""

    dashboard: str
    where: str  # panel title and refId, or the variable's name
    expr: str

    @property
    def id(self) -> str:
        return f"{self.dashboard}: {self.where}"


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard file in deploy/grafana/dashboards, parsed, by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def datasource_uid(panel: Mapping[str, Any], target: Mapping[str, Any]) -> str | None:
    """The uid of the data source a target reads: its own, else its panel's."""
    source = target.get("datasource") or panel.get("datasource") or {}
    uid = source.get("uid")
    return uid if isinstance(uid, str) else None


def variable_query(variable: Mapping[str, Any]) -> str:
    """A query variable's query text, whether Grafana stored it as a string or an object."""
    query = variable.get("query")
    if isinstance(query, Mapping):
        query = query.get("query")
    return query if isinstance(query, str) else ""


def label_values_as_promql(query: str) -> str:
    """`label_values(selector, label)` (a Grafana function) as PromQL that finds the same values."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, flags=re.DOTALL)
    if match is None:
        raise AssertionError(f"unsupported variable query {query!r}: use label_values(...)")
    selector, label = match.groups()
    return f"count by ({label}) ({selector})"


def prometheus_queries(file: str, dashboard: Mapping[str, Any]) -> list[Query]:
    """The PromQL of every Prometheus target and query variable of a dashboard."""
    queries = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query" and variable["datasource"]["uid"] == "prometheus":
            promql = label_values_as_promql(variable_query(variable))
            queries.append(Query(file, f"variable ${variable['name']}", promql))
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if datasource_uid(panel, target) == "prometheus":
                where = f"{panel['title']} [{target['refId']}]"
                queries.append(Query(file, where, target["expr"]))
    return queries


def all_queries() -> list[Query]:
    """The PromQL of every dashboard."""
    return [
        query
        for file, dashboard in load_dashboards().items()
        for query in prometheus_queries(file, dashboard)
    ]


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`$name`, `${name}` and `[[name]]` replaced as Grafana would; unknown names stay as they are.

    Unknown names include label_replace's `${1}`, which Grafana also leaves alone.
    """

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        return values.get(name, match[0])

    return re.sub(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)


def parse(expr: str) -> promql_parser.Expr:
    """The expression's syntax tree, with Grafana's interval variables given durations."""
    try:
        return promql_parser.parse(substitute(expr, STATIC_INTERVALS))
    except ValueError as error:
        raise AssertionError(f"{expr!r} does not parse: {error}") from None


@dataclass(frozen=True)
class Selector:
    """A series selector: its metric name, label values it asks for, and whether it is ranged."""

    name: str
    equal: Mapping[str, str]  # label="value" matchers; regex and negative ones left out
    values: Mapping[str, str]  # every matcher's value, whatever its operator
    ranged: bool  # inside a range `[...]`, the argument of rate(), increase() and the like


def selectors(expr: str) -> list[Selector]:
    """Every series selector of an expression."""
    found: list[Selector] = []
    depth = 0

    def enter(node: promql_parser.Expr) -> None:
        nonlocal depth
        if isinstance(node, promql_parser.MatrixSelector):
            depth += 1
        elif isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers
            equal = {m.name: m.value for m in matchers if m.op == promql_parser.MatchOp.Equal}
            name = node.name or equal.get("__name__")
            assert name, f"{expr!r} selects series without naming their metric"
            values = {m.name: m.value for m in matchers}
            found.append(Selector(name, equal, values, ranged=depth > 0))

    def leave(node: promql_parser.Expr) -> None:
        nonlocal depth
        if isinstance(node, promql_parser.MatrixSelector):
            depth -= 1

    promql_parser.walk(parse(expr), enter, leave)
    return found


def calls(expr: str, name: str) -> list[promql_parser.Call]:
    """Every call of the PromQL function `name` in an expression."""
    found: list[promql_parser.Call] = []

    def enter(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.Call) and node.func.name == name:
            found.append(node)

    promql_parser.walk(parse(expr), enter)
    return found


@cache
def documented_metrics() -> tuple[frozenset[str], tuple[str, ...], frozenset[str]]:
    """docs/metrics.md's table: exact series names, name prefixes (`process_*`), and counters."""
    text = METRICS_DOC.read_text()
    table = text.split("<!-- metrics-table: start -->")[1].split("<!-- metrics-table: end -->")[0]
    names: set[str] = set()
    prefixes: list[str] = []
    counters: set[str] = set()
    for row in table.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) < 2:
            continue
        for name in re.findall(r"`([a-z_:*]+)`", cells[0]):
            if name.endswith("*"):
                prefixes.append(name.rstrip("*"))
            elif cells[1] == "histogram":
                names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
                counters.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(name)
                if cells[1] == "counter":
                    counters.add(name)
    assert names, f"no metric found in {METRICS_DOC}'s table"
    return frozenset(names), tuple(prefixes), frozenset(counters)


def recording_rules() -> set[str]:
    """Names of the series the rule files record."""
    return {
        rule["record"]
        for path in sorted(RULES.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def is_leafwatch_series(name: str) -> bool:
    """A series LeafWatch exposes (docs/metrics.md) or one recorded from them."""
    names, prefixes, _ = documented_metrics()
    return name in names or name.startswith(prefixes) or name in recording_rules()


def is_host_or_target_series(name: str) -> bool:
    """node-exporter's series and Prometheus's own `up`."""
    return name.startswith("node_") or name == "up"


DASHBOARD_FILES = sorted(TITLES)
QUERIES = all_queries()


def test_the_five_dashboards_are_there_and_parse() -> None:
    assert sorted(load_dashboards()) == DASHBOARD_FILES


@pytest.mark.parametrize("file", DASHBOARD_FILES)
def test_dashboard_has_its_title_a_fixed_uid_and_a_current_schema(file: str) -> None:
    dashboard = load_dashboards()[file]
    assert dashboard["title"] == TITLES[file]
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"]), dashboard["uid"]
    assert dashboard["schemaVersion"] >= 39
    assert "id" not in dashboard or dashboard["id"] is None  # Grafana assigns it
    assert dashboard["description"]


def test_dashboard_uids_are_unique() -> None:
    uids = [dashboard["uid"] for dashboard in load_dashboards().values()]
    assert len(uids) == len(set(uids)), uids


@pytest.mark.parametrize("file", DASHBOARD_FILES)
def test_every_panel_is_described_and_has_a_unit_and_a_known_datasource(file: str) -> None:
    sources = {source["uid"] for source in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    problems = []
    ids = []
    for panel in panels(load_dashboards()[file]):
        ids.append(panel["id"])
        kind, title = panel["type"], panel.get("title")
        if kind not in DATA_PANELS | UNITLESS_PANELS:
            problems.append(f"{title}: panel type {kind!r}")
        if not title:
            problems.append(f"panel {panel['id']} has no title")
        if kind == "row":
            continue
        if not panel.get("description"):
            problems.append(f"{title}: no description")
        if kind not in UNITLESS_PANELS and not panel["fieldConfig"]["defaults"].get("unit"):
            problems.append(f"{title}: no unit")
        if kind == "text":
            continue
        if panel.get("datasource", {}).get("uid") not in sources:
            problems.append(f"{title}: data source {panel.get('datasource')} is not provisioned")
        if not panel.get("targets"):
            problems.append(f"{title}: no query")
        for target in panel.get("targets", []):
            if datasource_uid(panel, target) not in sources:
                problems.append(f"{title} [{target.get('refId')}]: unknown data source")
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("file", sorted(SEED_PANELS))
def test_the_seed_dashboards_panels_are_all_kept(file: str) -> None:
    titles = {panel.get("title") for panel in panels(load_dashboards()[file])}
    assert SEED_PANELS[file] <= titles, SEED_PANELS[file] - titles


@pytest.mark.parametrize("file", DASHBOARD_FILES)
def test_dashboards_link_to_each_other_and_pick_the_job(file: str) -> None:
    dashboard = load_dashboards()[file]
    assert "leafwatch" in dashboard["tags"]
    [link] = [link for link in dashboard["links"] if link["type"] == "dashboards"]
    assert link["tags"] == ["leafwatch"]
    assert link["includeVars"] is True  # the job (and version) chosen follows the reader
    assert link["keepTime"] is True
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    job = variables["job"]
    assert job["current"]["value"] == "leafwatch"
    assert variable_query(job) == "label_values(leafwatch_build_info, job)"


@pytest.mark.parametrize("query", QUERIES, ids=lambda query: query.id)
def test_every_query_reads_only_leafwatch_host_and_recorded_series(query: Query) -> None:
    rules = recording_rules()
    assert rules, f"no recording rule found in {RULES}"
    unknown = [
        selector.name
        for selector in selectors(query.expr)
        if not (is_leafwatch_series(selector.name) or is_host_or_target_series(selector.name))
    ]
    assert not unknown, f"{query.expr!r} reads series LeafWatch does not expose: {unknown}"


@pytest.mark.parametrize(
    "query",
    # The $job variable's own query lists the jobs to choose from.
    [query for query in QUERIES if query.where != "variable $job"],
    ids=lambda query: query.id,
)
def test_leafwatch_series_are_read_for_the_chosen_job_only(query: Query) -> None:
    for selector in selectors(query.expr):
        if not is_host_or_target_series(selector.name):
            job = selector.equal.get("job")
            assert job == "$job", f'{selector.name} in {query.expr!r} is not read for job="$job"'


@pytest.mark.parametrize("query", QUERIES, ids=lambda query: query.id)
def test_counters_are_read_through_a_range_never_raw(query: Query) -> None:
    # A raw counter is the total since the process started: meaningless on a chart, and it
    # drops at every restart. rate() or increase() over a range is the figure.
    _, _, counters = documented_metrics()
    for selector in selectors(query.expr):
        name = selector.name
        is_counter = name in counters or (
            name.startswith(("node_", "process_", "python_")) and name.endswith(COUNTER_SUFFIXES)
        )
        assert selector.ranged or not is_counter, f"raw counter {name} in {query.expr!r}"


@pytest.mark.parametrize("query", QUERIES, ids=lambda query: query.id)
def test_rates_use_the_rate_interval_and_quantiles_aggregate_by_le(query: Query) -> None:
    for match in re.finditer(r"\b(?:i?rate)\([^\[]*\[([^\]]*)\]", query.expr):
        assert match[1] == "$__rate_interval", f"rate window {match[1]} in {query.expr!r}"
    for call in calls(query.expr, "histogram_quantile"):
        buckets = call.args[1]
        assert isinstance(buckets, promql_parser.AggregateExpr), query.expr
        assert buckets.modifier is not None
        assert buckets.modifier.type == promql_parser.AggModifierType.By
        assert "le" in buckets.modifier.labels, query.expr


def test_pie_charts_count_over_the_dashboard_range() -> None:
    pies = [
        (file, panel)
        for file, dashboard in load_dashboards().items()
        for panel in panels(dashboard)
        if panel["type"] == "piechart"
    ]
    assert len(pies) >= 3
    for file, panel in pies:
        for target in panel["targets"]:
            assert target["instant"] is True, (file, panel["title"])
            uses_range = "[$__range]" in target["expr"]
            # Correct vs Incorrect reads the accuracy gauges, which are counts already.
            assert uses_range or "model_accuracy" in target["expr"], (file, panel["title"])


def test_every_recording_rule_a_dashboard_uses_exists() -> None:
    used = {selector.name for query in QUERIES for selector in selectors(query.expr)}
    recorded = {name for name in used if ":" in name}
    assert recorded, "the dashboards use the recording rules the alerts use"
    assert recorded <= recording_rules()


def test_provisioning_loads_the_dashboards_directory_compose_mounts() -> None:
    [provider] = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False  # the files stay the source of truth
    path = provider["options"]["path"]
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = {}
    for volume in grafana["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
    assert mounts[path] == "./grafana/dashboards", mounts
    assert (COMPOSE.parent / mounts[path]).resolve() == DASHBOARDS.resolve()
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"


def test_the_rate_interval_follows_the_scrape_interval() -> None:
    # Grafana's $__rate_interval is four times the data source's timeInterval at least; with a
    # timeInterval shorter than the real scrape interval, rate() windows would miss samples.
    sources = {
        source["uid"]: source for source in yaml.safe_load(DATASOURCES.read_text())["datasources"]
    }
    scrape = yaml.safe_load(PROMETHEUS.read_text())["global"]["scrape_interval"]
    assert sources["prometheus"]["jsonData"]["timeInterval"] == scrape


def test_latency_panels_carry_exemplars_that_open_the_trace() -> None:
    # The exemplar's trace_id is what the Prometheus data source links to the trace data source.
    exemplar_targets = [
        target
        for dashboard in load_dashboards().values()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("exemplar")
    ]
    assert exemplar_targets
    for target in exemplar_targets:
        assert "api_request_latency_seconds_bucket" in target["expr"]
    sources = {
        source["uid"]: source for source in yaml.safe_load(DATASOURCES.read_text())["datasources"]
    }
    [destination] = sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "trace_id"
    assert destination["datasourceUid"] in sources


def test_log_panels_read_the_stream_alloy_labels() -> None:
    alloy = (DEPLOY / "alloy" / "config.alloy").read_text()
    assert re.search(r'\bservice\s*=\s*"leafwatch"', alloy)
    logs = [
        target["expr"]
        for dashboard in load_dashboards().values()
        for panel in panels(dashboard)
        if panel["type"] == "logs"
        for target in panel["targets"]
    ]
    assert logs
    for expr in logs:
        assert re.match(r'\{service="leafwatch"[,}]', expr), expr
