"""Every PromQL expression of the dashboards and rule files runs on a real Prometheus.

A real LeafWatch gets traffic of every kind (predictions, verdicts, 4xx, a rejected upload, a
client that hangs up, injected 5xx, a drift run), a real Prometheus (and node-exporter) scrapes it
every second, and each expression is queried once the data is in: it must parse, evaluate, and
return data wherever that traffic makes some.
"""

import json
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml

from leafwatch.stack import render_prometheus_config, shipped_rule_files
from tests.conftest import image_bytes
from tests.deploy.test_grafana_dashboards import (
    PROMETHEUS,
    all_queries,
    load_dashboards,
    parse,
    selectors,
    substitute,
)
from tests.servers import free_port, leafwatch_serve, running

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LEAF = ROOT / "examples" / "leaf.jpg"
PROMETHEUS_BINARY = shutil.which("prometheus")
NODE_EXPORTER_BINARY = shutil.which("prometheus-node-exporter")
ADMIN = {"Authorization": "Bearer promql-live-admin"}
PREDICTIONS = 12

# Grafana's values for this run. $__rate_interval is max($__interval + scrape, 4 * scrape) with
# the 1 s scrape below; $__range stands for a one-hour dashboard.
SCRAPE_INTERVAL = "1s"
GRAFANA_INTERVALS = {"__rate_interval": "4s", "__interval": "2s", "__range": "1h"}

# Expressions that may return nothing after this traffic, and why: by panel (`file: title`) or
# by test id.
ALLOWED_EMPTY = {
    # It adds up whole clock hours (a subquery stepping on the hour): no hour that ended since
    # Prometheus started holds any of this traffic.
    "usage-analytics.json: Predictions by hour of day (UTC)": "needs a full clock hour of data",
    # The gap is published only with 50 verdicts behind it; this traffic gives 6. The promtool
    # unit tests (deploy/prometheus/tests/model.yml) show the alert on such figures.
    "rules/leafwatch-alerts.yml: alert ModelEstimationGap": "needs 50 verdicts",
    "model-performance.json: Estimation gap": "needs 50 verdicts",
}


@dataclass(frozen=True)
class Expression:
    """One expression to query: a dashboard query with its variables filled, or a rule's."""

    id: str
    promql: str
    alert: bool = False

    @property
    def panel(self) -> str:
        """The dashboard and panel of a panel target's id (`file: title [A]`)."""
        return self.id.rsplit(" [", 1)[0]


def dashboard_expressions(intervals: Mapping[str, str] = GRAFANA_INTERVALS) -> list[Expression]:
    """Every dashboard query, with the values Grafana would give its variables by default."""
    values_by_file = {
        file: {**variable_defaults(board), **intervals} for file, board in load_dashboards().items()
    }
    return [
        Expression(query.id, substitute(query.expr, values_by_file[query.dashboard]))
        for query in all_queries()
    ]


def variable_defaults(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Each template variable's value when the dashboard opens, and Grafana's interval values."""
    values = dict(GRAFANA_INTERVALS)
    for variable in dashboard["templating"]["list"]:
        current = variable["current"]["value"]
        if current in ("$__all", ["$__all"]):
            current = variable["allValue"]
        values[variable["name"]] = current[0] if isinstance(current, list) else current
    return values


def rule_expressions() -> list[Expression]:
    """The `expr` of every recording and alerting rule the shipped configuration loads."""
    expressions = []
    seen: set[str] = set()
    for path in shipped_rules():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or f"alert {rule['alert']}"
                key = f"rules/{path.name}: {name}"
                if key in seen:  # one alert name at two severities
                    key = f"{key} ({rule['labels']['severity']})"
                seen.add(key)
                expressions.append(Expression(key, rule["expr"], alert="alert" in rule))
    return expressions


def shipped_rules() -> list[Path]:
    """The rule files deploy/prometheus/prometheus.yml loads."""
    return shipped_rule_files(yaml.safe_load(PROMETHEUS.read_text()), PROMETHEUS.parent)


def alert_figures(promql: str) -> list[str]:
    """The figures an alert compares with constants: `a > 0.05 and b >= 1/60` gives a and b.

    An alert's expression is empty while it does not fire; its figures should have data.
    """
    figures: list[str] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.ParenExpr):
            visit(node.expr)
        elif isinstance(node, promql_parser.BinaryExpr):
            op = str(node.op)
            if op in ("and", "or", "unless"):
                visit(node.lhs)
                visit(node.rhs)
            elif op in ("==", "!=", ">", "<", ">=", "<=") and is_constant(node.rhs):
                # prettify(), unlike str(), escapes label values again (`fuse\\..*`).
                figures.append(node.lhs.prettify())

    visit(parse(promql))
    return figures


def is_constant(node: promql_parser.Expr) -> bool:
    """Whether an expression is arithmetic on numbers only, such as `1/60`."""
    kinds = (
        promql_parser.NumberLiteral,
        promql_parser.BinaryExpr,
        promql_parser.ParenExpr,
        promql_parser.UnaryExpr,
    )
    constant = True

    def check(child: promql_parser.Expr) -> None:
        nonlocal constant
        constant = constant and isinstance(child, kinds)

    promql_parser.walk(node, check)
    return constant


def reads_host(promql: str) -> bool:
    """Whether an expression reads node-exporter's series."""
    return any(selector.name.startswith("node_") for selector in selectors(promql))


EXPRESSIONS = dashboard_expressions() + rule_expressions()


class Prometheus:
    """A running Prometheus, queried at one fixed time so every expression sees the same data."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.time: float | None = None

    def query(self, promql: str) -> dict[str, Any]:
        """The `data` of an instant query; AssertionError with Prometheus's message on an error."""
        form = {"query": promql}
        if self.time is not None:
            form["time"] = f"{self.time:.3f}"
        answer = httpx.post(f"{self.url}/api/v1/query", data=form, timeout=30)
        body = answer.json()
        assert body["status"] == "success", f"{promql!r}: {body.get('error')}"
        data: dict[str, Any] = body["data"]
        return data


def has_data(data: Mapping[str, Any]) -> bool:
    """Whether a query's answer holds anything: a series, or a scalar."""
    return data["resultType"] in ("scalar", "string") or bool(data["result"])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus with the shipped rules, once it scraped LeafWatch and the host under traffic."""
    assert PROMETHEUS_BINARY, "prometheus not found: make tools installs the Debian package"
    workdir = tmp_path_factory.mktemp("promql-live")
    env = {
        "LEAFWATCH_ADMIN_TOKEN": ADMIN["Authorization"].removeprefix("Bearer "),
        "LEAFWATCH_FAULTS_ENABLED": "true",
        "LEAFWATCH_DRIFT_MIN_SAMPLES": "10",  # the lowest allowed: a run on this little traffic
        "LEAFWATCH_DRIFT_INTERVAL_SECONDS": "0",
        "LEAFWATCH_METRICS_CACHE_SECONDS": "0",  # accuracy from the verdicts just given
        "LEAFWATCH_LOG_FILE": str(workdir / "app.log"),
    }
    with (
        leafwatch_serve(workdir, env=env) as (leafwatch, _),
        node_exporter(workdir) as host,
        prometheus_server(workdir, [leafwatch.removeprefix("http://")], host) as server,
    ):
        wait_for(server, 'up{job="leafwatch"} == 1', "Prometheus to scrape LeafWatch")
        send_traffic(leafwatch)
        wait_for(
            server,
            f'sum(model_predictions_total{{job="leafwatch"}}) == {PREDICTIONS} '
            'and on () count(data_drift_feature_statistic{job="leafwatch"}) > 0 '
            'and on () count(model_class_accuracy{job="leafwatch"}) > 0 '
            'and on () count(api_injected_faults_total{job="leafwatch"}) > 0',
            "the traffic to be scraped",
        )
        # Two more scrapes, so that even the series the traffic created have a rate.
        wait_for(server, f'timestamp(up{{job="leafwatch"}}) > {time.time() + 1.5}', "scrapes")
        wait_for_rule_evaluation(server, after=time.time())
        server.time = time.time()
        yield server


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=lambda expression: expression.id)
def test_expression_evaluates_and_has_data(prometheus: Prometheus, expression: Expression) -> None:
    data = prometheus.query(expression.promql)
    figures = alert_figures(expression.promql) if expression.alert else [expression.promql]
    if expression.alert:
        assert figures, f"{expression.promql!r}: no comparison with a constant found"
    empty = [figure for figure in figures if not has_data(prometheus.query(figure))]
    if not empty:
        return
    if expression.id in ALLOWED_EMPTY or expression.panel in ALLOWED_EMPTY:
        return
    if NODE_EXPORTER_BINARY is None and reads_host(expression.promql):
        pytest.xfail("prometheus-node-exporter is not installed: host series cannot have data")
    # An alert's own expression is empty while it does not fire; its figures are checked.
    answer = json.dumps(data)[:300]
    raise AssertionError(f"no data from {empty!r} (the expression gave {answer})")


@pytest.mark.parametrize("entry", sorted(ALLOWED_EMPTY))
def test_allowed_empty_entries_name_existing_expressions(entry: str) -> None:
    known = {expression.id for expression in EXPRESSIONS}
    known |= {expression.panel for expression in EXPRESSIONS}
    assert entry in known, f"stale allow-list entry {entry}"


def test_dashboards_and_every_rule_file_are_covered() -> None:
    ids = {expression.id.split(":")[0] for expression in EXPRESSIONS}
    assert {f"rules/{path.name}" for path in shipped_rules()} <= ids
    assert shipped_rules(), f"{PROMETHEUS} loads no rule file"
    assert set(load_dashboards()) <= ids


def test_alert_figures_are_what_the_alert_compares() -> None:
    promql = "(a:b > 14.4 and c >= 1/60) or max by (job) (up) == 0 or absent(up) unless d > e"
    figures = ["".join(figure.split()) for figure in alert_figures(promql)]
    assert figures == ["a:b", "c", "maxby(job)(up)"]
    [figure] = alert_figures(r'a{fstype!~"fuse\\..*", quote="\"x"} < 0.1')
    [selector] = selectors(figure)
    assert selector.values == {"fstype": r"fuse\..*", "quote": '"x'}  # escaped again, intact


@contextmanager
def node_exporter(workdir: Path) -> Iterator[str | None]:
    """prometheus-node-exporter on a free port (its address), or None when it is not installed."""
    if NODE_EXPORTER_BINARY is None:
        yield None
        return
    address = f"127.0.0.1:{free_port()}"
    command = [NODE_EXPORTER_BINARY, f"--web.listen-address={address}"]
    with running(command, ready_url=f"http://{address}/metrics", log=workdir / "node-exporter.log"):
        yield address


@contextmanager
def prometheus_server(
    workdir: Path,
    leafwatch_targets: Sequence[str],
    host: str | None,
    *,
    remote_write_url: str | None = None,
) -> Iterator[Prometheus]:
    """The shipped Prometheus configuration, pointed at these LeafWatch replicas and host.

    It scrapes and evaluates every second, and writes to `remote_write_url` when one is given.
    """
    assert PROMETHEUS_BINARY is not None
    address = f"127.0.0.1:{free_port()}"
    config = render_prometheus_config(
        yaml.safe_load(PROMETHEUS.read_text()),
        leafwatch_targets=leafwatch_targets,
        node_exporter=host,
        prometheus_address=address,
        alertmanager_address=f"127.0.0.1:{free_port()}",  # none: alerts are not the point here
        rule_files=evaluated_every_second(shipped_rules(), workdir / "rules"),
        scrape_interval=SCRAPE_INTERVAL,
        evaluation_interval=SCRAPE_INTERVAL,
        remote_write_url=remote_write_url,
    )
    for write in config.get("remote_write", []):
        # Sent every second rather than every 5 s (the default): the test waits less.
        write.setdefault("queue_config", {})["batch_send_deadline"] = SCRAPE_INTERVAL
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        PROMETHEUS_BINARY,
        f"--config.file={path}",
        f"--storage.tsdb.path={workdir / 'prometheus'}",
        f"--web.listen-address={address}",
    ]
    with running(command, ready_url=f"http://{address}/-/ready", log=workdir / "prometheus.log"):
        yield Prometheus(f"http://{address}")


def evaluated_every_second(files: list[Path], directory: Path) -> list[Path]:
    """Copies of the rule files whose groups all follow the global evaluation interval.

    Only the timing changes: a group evaluated once a minute might not have run before the
    queries, and the series it records would be missing.
    """
    directory.mkdir()
    copies = []
    for index, source in enumerate(files):
        document = yaml.safe_load(source.read_text())
        for group in document["groups"]:
            group.pop("interval", None)
        copy = directory / f"{index:02d}-{source.name}"
        copy.write_text(yaml.safe_dump(document, sort_keys=False))
        copies.append(copy)
    return copies


def send_traffic(url: str) -> None:
    """Requests of every kind the dashboards and rules count."""
    with httpx.Client(base_url=url, timeout=30) as client:
        predictions = []
        for index in range(PREDICTIONS):
            image = LEAF.read_bytes() if index % 2 else image_bytes(size=(200 + 20 * index, 160))
            answer = client.post(
                "/api/v1/predict",
                files={"file": ("leaf.jpg", image, "image/jpeg")},
                data={"user_id": f"farmer-{index % 3}"},
            )
            assert answer.status_code == 200, answer.text
            predictions.append(answer.json())
        sources = ["mobile_app", "expert_review", "web"]
        for index, prediction in enumerate(predictions[:6]):
            verdict = {"is_correct": index % 3 != 1, "feedback_source": sources[index % 3]}
            if not verdict["is_correct"]:
                predicted = prediction["predicted_class_name"]
                verdict["correct_class_name"] = "Stage6" if predicted == "Healthy" else "Healthy"
            answer = client.post(
                "/api/v1/feedback/submit",
                json={"prediction_id": prediction["prediction_id"], **verdict},
            )
            assert answer.status_code == 201, answer.text
        ids = [prediction["prediction_id"] for prediction in predictions]
        assert client.get(f"/api/v1/predictions/{ids[0]}").status_code == 200
        assert client.get(f"/api/v1/predictions/{uuid.uuid4()}").status_code == 404
        assert client.post("/api/v1/feedback/submit", json={}).status_code == 422
        for rejected in (b"", b"plain text, not a picture"):
            answer = client.post(
                "/api/v1/predict",
                files={"file": ("leaf.jpg", rejected, "image/jpeg")},
                data={"user_id": "farmer-9"},
            )
            assert 400 <= answer.status_code < 500, answer.text
        hang_up_during_upload(url)
        fault = {"route": "/api/v1/feedback/stats", "error_ratio": 1.0, "latency_ms": 5}
        assert client.post("/api/v1/admin/faults", json=fault, headers=ADMIN).status_code == 200
        for _ in range(3):
            assert client.get("/api/v1/feedback/stats").status_code == 500
        assert client.delete("/api/v1/admin/faults", headers=ADMIN).status_code == 200
        assert client.get("/api/v1/feedback/stats").status_code == 200
        drift = client.post("/api/v1/drift/run", headers=ADMIN)
        assert drift.status_code == 200, drift.text


def hang_up_during_upload(url: str) -> None:
    """Start an upload and leave before it is complete: the server counts a 499."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        "POST /api/v1/predict HTTP/1.1\r\nHost: leafwatch\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
        '--b\r\nContent-Disposition: form-data; name="file"; filename="leaf.jpg"\r\n\r\n'
    )
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + b"\xff" * 1000)
        time.sleep(0.3)  # the server is reading the body now


def wait_for(server: Prometheus, promql: str, what: str, timeout: float = 30) -> None:
    """Poll until the query has a result."""
    deadline = time.monotonic() + timeout
    while not server.query(promql)["result"]:
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {promql}"
        time.sleep(0.25)


def wait_for_rule_evaluation(server: Prometheus, *, after: float, timeout: float = 30) -> None:
    """Poll until every rule group has been evaluated since `after` (a Unix time)."""
    deadline = time.monotonic() + timeout
    while True:
        groups = httpx.get(f"{server.url}/api/v1/rules").json()["data"]["groups"]
        stale = [
            group["name"]
            for group in groups
            if datetime.fromisoformat(group["lastEvaluation"]).timestamp() <= after
        ]
        if groups and not stale:
            return
        assert time.monotonic() < deadline, f"rule groups not evaluated: {stale}"
        time.sleep(0.25)
