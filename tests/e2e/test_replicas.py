"""Two LeafWatch replicas on one PostgreSQL, one Prometheus scraping both, and VictoriaMetrics.

Each replica is `leafwatch serve --workers 2` with its own var dir: they share nothing but the
database. Traffic goes to both, on fresh connections so that every worker answers. Prometheus
scrapes both every second with the shipped rules and remote_writes to a real VictoriaMetrics.
The tests show that counters add up exactly across replicas, that the figures computed from the
database are the same on every replica and worker, that the scheduled drift run happens once per
period across all of them, that every dashboard and rule expression aggregates replicas as it
should, and that VictoriaMetrics answers the dashboards' queries as Prometheus does.
"""

import math
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from sqlalchemy import select

from leafwatch.observe import metrics as names
from leafwatch.runtime import DRIFT_COMMIT_S
from leafwatch.stack import free_port, parse_duration
from leafwatch.storage import db
from leafwatch.storage.tables import DriftReport, JobRun
from tests.conftest import _reset_postgres, image_bytes
from tests.deploy.test_grafana_dashboards import is_leafwatch_series, load_dashboards, selectors
from tests.deploy.test_promql_live import (
    LEAF,
    SCRAPE_INTERVAL,
    Expression,
    Prometheus,
    alert_figures,
    dashboard_expressions,
    node_exporter,
    prometheus_server,
    reads_host,
    rule_expressions,
    shipped_rules,
    variable_defaults,
    wait_for,
    wait_for_rule_evaluation,
)
from tests.e2e.test_workers import fresh_get, health_counts_per_worker
from tests.scrape import samples
from tests.servers import leafwatch_serve, running

pytestmark = pytest.mark.slow

VICTORIA_METRICS_BINARY = shutil.which("victoria-metrics")
REPLICAS = 2
DRIFT_INTERVAL_S = 5  # several periods within the test
CACHE_S = 1  # LEAFWATCH_METRICS_CACHE_SECONDS
SCRAPE_S = parse_duration(SCRAPE_INTERVAL) / 1000  # Prometheus's, in seconds
JOB = "leafwatch"
# Requests of every kind the dashboards count, in each round of traffic, per replica.
IMAGES = [LEAF.read_bytes(), image_bytes(size=(240, 160)), image_bytes(size=(200, 300))]
HEALTH_CHECKS = 10
# The main traffic: this many rounds after the warm-up round (every round sends each image).
ROUNDS = 4
# The dashboards' range (their $__range and $__rate_interval) lasts this long at least.
MIN_RANGE_S = 25

# Computed from the shared database, so every replica reports the same value: summing them over
# replicas would count each figure once per replica.
DATABASE_FIGURES = frozenset(
    {
        names.MODEL_ACCURACY,
        names.MODEL_ACCURACY_FEEDBACK,
        names.MODEL_ACCURACY_LOWER,
        names.MODEL_ACCURACY_UPPER,
        names.MODEL_ESTIMATED_ACCURACY,
        names.MODEL_ESTIMATION_GAP,
        names.MODEL_ESTIMATION_GAP_OUTSIDE,
        names.MODEL_CLASS_ACCURACY,
        names.MODEL_CLASS_ACCURACY_FEEDBACK,
        names.DATA_DRIFT_SCORE,
        names.DATA_DRIFT_FEATURE_STATISTIC,
        names.DATA_DRIFT_FEATURE_DRIFTED,
        names.DATA_DRIFT_DETECTED,
        names.DATA_DRIFT_CONSECUTIVE_RUNS,
        names.DATA_DRIFT_RETRAINING,
        names.DATA_DRIFT_SAMPLES,
        names.DATA_DRIFT_LAST_RUN,
        names.USAGE_ACTIVE_USERS,
        names.USAGE_FEEDBACK_RATE,
    }
)

# Panels and alerts whose answer is meant to be split by replica (`instance`) or process (`pid`),
# by panel (`file: title`) or rule; every other expression must aggregate replicas away.
PER_INSTANCE = {
    # Each replica's own state: which one is down, has no model, serves which version or build.
    "system-health.json: Targets up",
    "model-performance.json: Model loaded",
    "model-performance.json: Served model per instance",
    "system-health.json: LeafWatch build per instance",
    "system-health.json: Garbage collections",  # a replica's workers added up
    "rules/leafwatch-alerts.yml: alert ModelNotLoaded",
    # Per process: a leak, a busy loop or a crash loop belongs to one process.
    "system-health.json: Process CPU",
    "system-health.json: Resident memory",
    "system-health.json: Open file descriptors",
    "system-health.json: Process uptime",
    # Each replica's spool is on its own disk.
    "system-health.json: Records waiting in the spool",
    "rules/reliability.yml: alert SpoolNotDraining",
    # node-exporter's hosts: one `instance` per machine.
    "system-health.json: Host CPU busy",
    "system-health.json: Host memory used",
    "system-health.json: Disk space used",
    "system-health.json: Network traffic",
    "system-health.json: Disk I/O",
    "system-health.json: Load average",
    "rules/host.yml: alert HostHighMemory",
    "rules/host.yml: alert HostDiskSpaceLow",
    "rules/host.yml: alert HostHighCPU",
}

# VictoriaMetrics against Prometheus, for queries over counters (rate, increase, and what is
# computed from them). VictoriaMetrics does not extrapolate: its rate() is the increase from the
# last sample before the window to the last one in it, divided by their time apart; Prometheus
# takes the first and last samples inside the window and extrapolates to the window's edges.
# With a steady scrape interval s and a window of W seconds (a whole number of intervals), on a
# series that existed before the window and did not move between those two first samples,
# Prometheus's answer is VictoriaMetrics's times W / (W - s): they differ by s / W. Here s is
# 1 s and W at least MIN_RANGE_S (25 s), so 4% at most. On the usage dashboard's fixed 1h and
# 1d windows the series were born inside the window, at zero: Prometheus extrapolates its last
# sample to the window's end, one interval against the series' age. Measured with W = 26 s:
# 3.85% (1/26 exactly) on the counters that moved only inside the range, less on the others
# (2.3% on the 1h windows, 1% on ratios). The tolerance adds a quarter for scrape jitter.
RATE_TOLERANCE = 0.05
# Gauges, and the series Prometheus recorded and sent, are the same samples: VictoriaMetrics
# stores each value as a decimal mantissa and exponent, so the last bit of a double may differ,
# which `time() - a Unix time` turns into up to 0.3 microseconds.
GAUGE_TOLERANCE = 1e-6
# Dashboard queries VictoriaMetrics is compared on: all of them but node-exporter's, whose
# counters (bytes read, sent) move between any two samples, so the sample before the window
# and the first in it differ by no bounded share. Those that have no data after this traffic:
# Panels over the service's own process counters (CPU seconds, garbage collections) are compared
# on their series only: those counters move between any two scrapes as the host's do, and the
# sample before the window is VictoriaMetrics' start where Prometheus takes the first inside it.
SERIES_ONLY = {
    "system-health.json: Process CPU": "CPU seconds move between every two scrapes",
    "system-health.json: Garbage collections": "collections happen between every two scrapes",
}
NO_DATA = {
    "api-overview.json: Clients leaving before the answer (499)": "no client hangs up",
    "drift-and-input-quality.json: Injected faults": "the fault switch is off",
    "usage-analytics.json: Predictions by hour of day (UTC)": "needs a whole clock hour of data",
    "model-performance.json: Estimation gap": "published with 50 verdicts behind it; 30 here",
}


@dataclass
class Traffic:
    """What the test sent to each replica: requests by (method, route, status), and more."""

    requests: dict[str, Counter[tuple[str, str, str]]] = field(default_factory=dict)
    predictions: dict[str, Counter[str]] = field(default_factory=dict)
    verdicts: dict[str, Counter[tuple[str, str]]] = field(default_factory=dict)

    def send(self, url: str, method: str, path: str, route: str, **options: Any) -> httpx.Response:
        """One request on a new connection (either worker may answer it), counted by route."""
        with httpx.Client(base_url=url, headers={"Connection": "close"}, timeout=30) as client:
            answer = client.request(method, path, **options)
        instance = url.removeprefix("http://")
        key = (method, route, str(answer.status_code))
        self.requests.setdefault(instance, Counter())[key] += 1
        return answer

    def round(self, url: str) -> None:
        """Predictions of every image, a verdict on each, health checks and client errors."""
        instance = url.removeprefix("http://")
        for index, image in enumerate(IMAGES):
            answer = self.send(
                url,
                "POST",
                "/api/v1/predict",
                "/api/v1/predict",
                files={"file": ("leaf.jpg", image, "image/jpeg")},
                data={"user_id": f"farmer-{index}"},
            )
            assert answer.status_code == 200, answer.text
            prediction = answer.json()
            self.predictions.setdefault(instance, Counter())[
                prediction["predicted_class_name"]
            ] += 1
            verdict: dict[str, Any] = {"is_correct": index != 1, "feedback_source": "mobile_app"}
            if not verdict["is_correct"]:
                predicted = prediction["predicted_class_name"]
                verdict["correct_class_name"] = "Stage6" if predicted == "Healthy" else "Healthy"
            answer = self.send(
                url,
                "POST",
                "/api/v1/feedback/submit",
                "/api/v1/feedback/submit",
                json={"prediction_id": prediction["prediction_id"], **verdict},
            )
            assert answer.status_code == 201, answer.text
            kind = ("true" if verdict["is_correct"] else "false", "mobile_app")
            self.verdicts.setdefault(instance, Counter())[kind] += 1
        for _ in range(HEALTH_CHECKS):
            assert self.send(url, "GET", "/health", "/health").status_code == 200
        missing = "/api/v1/predictions/00000000-0000-4000-8000-000000000000"
        route = "/api/v1/predictions/{prediction_id}"
        assert self.send(url, "GET", missing, route).status_code == 404
        route = "/api/v1/feedback/submit"
        assert self.send(url, "POST", route, route, json={}).status_code == 422
        empty = {"file": ("leaf.jpg", b"", "image/jpeg")}
        answer = self.send(
            url, "POST", "/api/v1/predict", "/api/v1/predict", files=empty, data={"user_id": "x"}
        )
        assert 400 <= answer.status_code < 500, answer.text


@dataclass
class Replicas:
    """The running replicas and what watches them, with one evaluation time for every query."""

    urls: list[str]
    workdirs: list[Path]
    database_url: str
    prometheus: Prometheus
    victoria: Prometheus
    traffic: Traffic
    # Grafana's interval variables for a dashboard whose range starts after the warm-up round.
    intervals: dict[str, str]
    time: float

    @property
    def instances(self) -> list[str]:
        """The replicas' `instance` labels."""
        return [url.removeprefix("http://") for url in self.urls]


@pytest.fixture(scope="module")
def replicas(
    postgres_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Two replicas under traffic, scraped; evaluated when every process reports the same data."""
    assert VICTORIA_METRICS_BINARY, "victoria-metrics not found: make tools installs it"
    _reset_postgres(postgres_database)
    workdir = tmp_path_factory.mktemp("replicas")
    migrate(postgres_database, workdir)
    workdirs = [workdir / f"replica-{index}" for index in range(REPLICAS)]
    ports = [free_port() for _ in workdirs]
    with ExitStack() as stack:
        victoria = stack.enter_context(victoria_metrics(workdir))
        host = stack.enter_context(node_exporter(workdir))
        servers = []
        for home, port in zip(workdirs, ports, strict=True):
            home.mkdir()
            env = replica_env(postgres_database, home)
            servers.append(leafwatch_serve(home, "--workers", "2", env=env, port=port))
        # Started side by side: each replica takes seconds to load its model in two workers, and
        # Prometheus takes up to five to begin scraping the targets it is given.
        *started, prometheus = enter_together(
            stack,
            [
                *servers,
                prometheus_server(
                    workdir,
                    [f"127.0.0.1:{port}" for port in ports],
                    host,
                    remote_write_url=f"{victoria.url}/api/v1/write",
                ),
            ],
        )
        urls = [url for url, _process in started]
        wait_for(prometheus, f'count(up{{job="{JOB}"}} == 1) == {REPLICAS}', "both replicas up")
        traffic = Traffic()
        # A warm-up round creates every series the main traffic moves, and the dashboards' range
        # starts after it: rate() then compares series that existed before the range, which is
        # where Prometheus and VictoriaMetrics agree (RATE_TOLERANCE).
        for url in urls:
            traffic.round(url)
        wait_for_scrapes(prometheus, after=time.time())
        range_start = time.time() + SCRAPE_S
        # Quiet until the first scrape inside the range: VictoriaMetrics counts from the sample
        # before the range, Prometheus from the first one in it.
        time.sleep(4 * SCRAPE_S)
        for _ in range(ROUNDS):
            for url in urls:
                traffic.round(url)
            time.sleep(SCRAPE_S)
        wait_for_scrapes(prometheus, after=time.time())
        start, end = quiet_window(postgres_database, not_before=range_start + MIN_RANGE_S)
        moment = max(time.time(), start + 1.5 * SCRAPE_S)
        assert moment < end, "the quiet window closed before the data was in"
        wait_for_scrapes(prometheus, after=moment)
        wait_for_rule_evaluation(prometheus, after=moment)
        wait_for_samples(victoria, after=moment)
        span = f"{math.floor(moment - range_start)}s"
        # Every query of the tests below sees the data as it was at that moment.
        prometheus.time = victoria.time = moment
        yield Replicas(
            urls=urls,
            workdirs=workdirs,
            database_url=postgres_database,
            prometheus=prometheus,
            victoria=victoria,
            traffic=traffic,
            intervals={"__rate_interval": span, "__range": span, "__interval": "5s"},
            time=moment,
        )


def enter_together(stack: ExitStack, managers: list[AbstractContextManager[Any]]) -> list[Any]:
    """Enter context managers in parallel threads; each one that started is exited by `stack`."""
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(manager.__enter__) for manager in managers]
    for manager, future in zip(managers, futures, strict=True):
        if future.exception() is None:
            stack.push(manager.__exit__)
    return [future.result() for future in futures]


def replica_env(database_url: str, home: Path) -> dict[str, str]:
    """One replica's settings: the shared database, a short drift period, a short cache."""
    return {
        "LEAFWATCH_DATABASE_URL": database_url,
        "LEAFWATCH_MIGRATE_ON_START": "false",  # migrated once beforehand, as in production
        "LEAFWATCH_DRIFT_INTERVAL_SECONDS": str(DRIFT_INTERVAL_S),
        "LEAFWATCH_DRIFT_MIN_SAMPLES": "10",  # the lowest allowed: figures on this traffic
        "LEAFWATCH_METRICS_CACHE_SECONDS": str(CACHE_S),
        "LEAFWATCH_PERFORMANCE_INTERVAL_SECONDS": "0",
        "LEAFWATCH_ROLLUP_INTERVAL_SECONDS": "0",
        "LEAFWATCH_LOG_FILE": str(home / "app.log"),
    }


def migrate(database_url: str, workdir: Path) -> None:
    """`leafwatch db upgrade`, as the compose stack's migration job runs it before the replicas."""
    env = {**os.environ, "LEAFWATCH_DATABASE_URL": database_url}
    env["LEAFWATCH_LOG_FILE"] = str(workdir / "migrate.log")
    command = [sys.executable, "-m", "leafwatch", "db", "upgrade"]
    result = subprocess.run(
        command, env=env, cwd=workdir, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@contextmanager
def victoria_metrics(workdir: Path) -> Iterator[Prometheus]:
    """VictoriaMetrics on a free port, its data under `workdir`; it answers PromQL queries."""
    assert VICTORIA_METRICS_BINARY is not None
    address = f"127.0.0.1:{free_port()}"
    command = [
        VICTORIA_METRICS_BINARY,
        f"-storageDataPath={workdir / 'victoria-metrics'}",
        f"-httpListenAddr={address}",
        "-search.latencyOffset=0s",  # samples are queryable at once, not 30 s after they arrive
        "-search.disableCache",  # every query reads the stored samples
    ]
    with running(command, ready_url=f"http://{address}/health", log=workdir / "victoria.log"):
        yield Prometheus(f"http://{address}")


def wait_for_scrapes(server: Prometheus, *, after: float) -> None:
    """Poll until Prometheus has scraped every replica at a time past `after` (a Unix time)."""
    # A request is counted as its answer leaves: half a second covers one answered just before.
    promql = f'count(timestamp(up{{job="{JOB}"}}) > {after + 0.5:.3f}) == {REPLICAS}'
    wait_for(server, promql, "a scrape of every replica")


def wait_for_samples(victoria: Prometheus, *, after: float) -> None:
    """Poll until VictoriaMetrics holds samples past `after`, scraped and recorded ones alike."""
    # Every replica's, not just one: remote_write sends in batches, which need not hold both
    # replicas' scrapes, and the drift figures, which change every period, are checked directly.
    expected = {
        f'up{{job="{JOB}"}}': REPLICAS,
        f'data_drift_last_run_timestamp_seconds{{job="{JOB}"}}': REPLICAS,
        f'job:api_requests:rate5m{{job="{JOB}"}}': 1,
    }
    for selector, count in expected.items():
        promql = f"count(timestamp({selector}) > {after + SCRAPE_S:.3f}) == {count}"
        wait_for(victoria, promql, f"VictoriaMetrics to receive {selector}")


def quiet_window(database_url: str, *, not_before: float = 0.0) -> tuple[float, float]:
    """The next stretch of time in which every process reports the same drift report.

    It starts when the current period's drift run has ended and the metrics cache that might
    predate it has expired (`not_before` at the earliest), and ends when the next period's run
    may start; it is returned once it has begun. Accuracy figures stay put once the traffic has
    ended; the latest drift report changes with every run.
    """
    engine = db.make_engine(database_url)
    try:
        while True:
            with db.make_sessionmaker(engine)() as session:
                run = session.scalars(
                    select(JobRun)
                    .where(JobRun.job == "drift", JobRun.finished_at.is_not(None))
                    .order_by(JobRun.period_start.desc())
                    .limit(1)
                ).first()
            if run is not None and run.finished_at is not None:
                end = timestamp(run.period_start) + DRIFT_INTERVAL_S
                # Shown from the first cache period starting DRIFT_COMMIT_S after the run ended.
                shown = timestamp(run.finished_at) + DRIFT_COMMIT_S + CACHE_S
                start = max(shown + 0.2, not_before)
                if max(start, time.time()) < end - 2 * SCRAPE_S:
                    time.sleep(max(start - time.time(), 0))
                    return start, end
            time.sleep(0.2)
    finally:
        engine.dispose()


def timestamp(moment: datetime) -> float:
    """A database time (stored without a zone, in UTC) as a Unix time."""
    return moment.replace(tzinfo=UTC).timestamp() if moment.tzinfo is None else moment.timestamp()


# ---- counters add up ------------------------------------------------------------------------


def test_request_prediction_and_verdict_counters_add_up_exactly_across_replicas(
    replicas: Replicas,
) -> None:
    prometheus = Prometheus(replicas.prometheus.url)  # the latest samples, all traffic scraped
    traffic = replicas.traffic
    # /metrics is Prometheus's own scraping, /ready the start-up checks: not the test's traffic.
    sent_routes = 'endpoint!~"/metrics|/ready"'
    by_instance = by_labels(
        prometheus,
        "sum by (instance, method, endpoint, status) "
        f'(api_requests_total{{job="{JOB}", {sent_routes}}})',
        "instance",
        "method",
        "endpoint",
        "status",
    )
    expected = {
        (instance, *key): float(count)
        for instance, counts in traffic.requests.items()
        for key, count in counts.items()
    }
    assert by_instance == expected
    total = sum(sum(counts.values()) for counts in traffic.requests.values())
    assert scalar(prometheus, f'sum(api_requests_total{{job="{JOB}", {sent_routes}}})') == total

    predictions = sum(traffic.predictions.values(), Counter[str]())
    assert scalar(prometheus, f'sum(model_predictions_total{{job="{JOB}"}})') == sum(
        predictions.values()
    )
    promql = f'sum by (predicted_class) (model_predictions_total{{job="{JOB}"}}) > 0'
    assert by_labels(prometheus, promql, "predicted_class") == {
        (name,): float(count) for name, count in predictions.items()
    }
    verdicts = sum(traffic.verdicts.values(), Counter[tuple[str, str]]())
    promql = f'sum by (is_correct, feedback_source) (feedback_submissions_total{{job="{JOB}"}}) > 0'
    assert by_labels(prometheus, promql, "is_correct", "feedback_source") == {
        key: float(count) for key, count in verdicts.items()
    }
    # Fresh connections reached both workers of each replica.
    for home in replicas.workdirs:
        per_worker = health_counts_per_worker(home / "var" / "metrics")
        assert len([count for count in per_worker.values() if count]) == 2, per_worker


def by_labels(server: Prometheus, promql: str, *labels: str) -> dict[tuple[str, ...], float]:
    """A query's answer keyed by the values of `labels`."""
    return {
        tuple(row["metric"][label] for label in labels): float(row["value"][1])
        for row in server.query(promql)["result"]
    }


def scalar(server: Prometheus, promql: str) -> float:
    """The value of a query answering one series."""
    [row] = server.query(promql)["result"]
    return float(row["value"][1])


# ---- figures from the database agree -----------------------------------------------------------


def test_accuracy_and_drift_figures_are_the_same_on_every_replica_and_worker(
    replicas: Replicas,
) -> None:
    for _ in range(3):  # a window may close while this machine is slow: then the next one
        start, end = quiet_window(replicas.database_url)
        scrapes = {
            instance: [database_figures(fresh_get(f"{url}/metrics").text) for _ in range(6)]
            for instance, url in zip(replicas.instances, replicas.urls, strict=True)
        }
        moment = max(time.time(), start + 1.5 * SCRAPE_S)
        if moment < end - 0.1:
            break
    else:
        pytest.fail("no quiet window long enough to compare the replicas in")
    [reference, *_] = scrapes[replicas.instances[0]]
    for instance, figures in scrapes.items():
        for scraped in figures:
            assert scraped == reference, f"{instance} differs from {replicas.instances[0]}"
    reported = {name for (name, _labels), _value in reference}
    for name in (
        names.MODEL_ACCURACY,
        names.MODEL_ESTIMATED_ACCURACY,
        names.MODEL_CLASS_ACCURACY,
        names.DATA_DRIFT_SCORE,
        names.DATA_DRIFT_FEATURE_STATISTIC,
        names.DATA_DRIFT_LAST_RUN,
    ):
        assert name in reported, f"{name} has no value: nothing compared"

    # What Prometheus stored from each replica at a moment of the same window.
    wait_for_scrapes(Prometheus(replicas.prometheus.url), after=moment)
    prometheus = Prometheus(replicas.prometheus.url)
    prometheus.time = moment
    pattern = "|".join(sorted(DATABASE_FIGURES))
    rows = prometheus.query(f'{{__name__=~"{pattern}", job="{JOB}"}}')["result"]
    stored: dict[str, dict[tuple[str, frozenset[tuple[str, str]]], float]] = {}
    for row in rows:
        labels = dict(row["metric"])
        instance, name = labels.pop("instance"), labels.pop("__name__")
        labels.pop("job")
        stored.setdefault(instance, {})[(name, frozenset(labels.items()))] = float(row["value"][1])
    assert stored == {instance: dict(reference) for instance in replicas.instances}


def database_figures(text: str) -> frozenset[tuple[tuple[str, frozenset[tuple[str, str]]], float]]:
    """The samples of a /metrics answer that are computed from the database."""
    return frozenset(
        ((sample.name, frozenset(sample.labels.items())), sample.value)
        for sample in samples(text)
        if sample.name in DATABASE_FIGURES
    )


# ---- the scheduled drift run -------------------------------------------------------------------


def test_the_scheduled_drift_run_happens_once_per_period_across_replicas(
    replicas: Replicas,
) -> None:
    engine = db.make_engine(replicas.database_url)
    with db.make_sessionmaker(engine)() as session:
        runs = session.scalars(
            select(JobRun).where(JobRun.job == "drift").order_by(JobRun.period_start)
        ).all()
        reports = session.scalars(select(DriftReport).order_by(DriftReport.run_at)).all()
    engine.dispose()
    moment = replicas.time
    runs = [run for run in runs if timestamp(run.period_start) <= moment]
    reports = [report for report in reports if timestamp(report.run_at) <= moment]
    periods = [timestamp(run.period_start) for run in runs]
    assert len(periods) >= 4, f"only {len(periods)} drift periods: not several"
    # Every period from the first, each claimed once by one of the four processes, and done.
    assert periods == [periods[0] + DRIFT_INTERVAL_S * n for n in range(len(periods))]
    assert {run.status for run in runs} == {"done"}, [
        (run.period_start, run.status) for run in runs
    ]
    # One report per period: no process ran drift without holding the period's claim.
    report_periods = [
        timestamp(report.run_at) // DRIFT_INTERVAL_S * DRIFT_INTERVAL_S for report in reports
    ]
    assert report_periods == periods
    # Counted once, by the process that ran it: the sum over every instance is the number of runs.
    promql = f'sum by (status) (scheduled_job_runs_total{{job="{JOB}", task="drift"}})'
    counted = by_labels(replicas.prometheus, promql, "status")
    assert counted == {("done",): float(len(runs)), ("failed",): 0.0}


# ---- the dashboards and rules aggregate replicas ----------------------------------------------


def recorded_expressions() -> dict[str, str]:
    """The expression behind each recorded series, by its name."""
    return {
        rule["record"]: rule["expr"]
        for path in shipped_rules()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


RECORDED = recorded_expressions()


def expressions_with(intervals: Mapping[str, str]) -> list[Expression]:
    """Every dashboard query (with these interval values) and every rule expression."""
    return dashboard_expressions(intervals) + rule_expressions()


_EXPRESSIONS: dict[float, dict[str, Expression]] = {}


def expressions_by_id(replicas: Replicas) -> dict[str, Expression]:
    """Every expression with the replicas' interval values, by id (built once per module run)."""
    if replicas.time not in _EXPRESSIONS:
        found = expressions_with(replicas.intervals)
        _EXPRESSIONS[replicas.time] = {expression.id: expression for expression in found}
    return _EXPRESSIONS[replicas.time]


# The ids of what the parametrized tests run; the intervals are filled in per test run.
EXPRESSION_IDS = [expression.id for expression in expressions_with({})]


def one_replica(promql: str, instance: str | None) -> str:
    """The expression with each recorded series replaced by the expression that records it and,
    given an instance, each LeafWatch selector limited to that replica's series.

    Replacing the recorded series makes the three answers (all replicas, one, the other) come
    from the same samples at the same moment, where a recorded value dates from the last rule
    evaluation. A recorded series is read for the one job here, so its matchers are dropped.
    """

    def visit(node: promql_parser.Expr) -> promql_parser.Expr | None:
        if not isinstance(node, promql_parser.VectorSelector):
            return None
        [selector] = selectors(node.prettify())
        if selector.name in RECORDED:
            assert set(selector.values) <= {"job"}, f"{node.prettify()}: matchers would be lost"
            return promql_parser.parse(f"({one_replica(RECORDED[selector.name], instance)})")
        if instance is None or not limitable(selector.name, selector.equal):
            return None
        assert node.offset is None, node.prettify()
        assert node.at is None, node.prettify()
        text = node.prettify()
        matcher = f'instance="{instance}"'
        text = f"{text[:-1]},{matcher}}}" if text.endswith("}") else f"{text}{{{matcher}}}"
        return promql_parser.parse(text)

    return promql_parser.transform(promql_parser.parse(promql), post_visit=visit).prettify()


def limitable(name: str, equal: Mapping[str, str]) -> bool:
    """Whether a selector reads LeafWatch's replicas, whose series carry their `instance`."""
    return is_leafwatch_series(name) or equal.get("job") == JOB


def relation(promql: str) -> str:
    """How the answer over both replicas follows from each replica's answer.

    `same`: it reads only figures from the database, which every replica reports alike, so it is
    each replica's answer. `sum`, `max`, `min`, `count`: an aggregation of series taken one by
    one, so it aggregates the replicas' answers the same way. `avg`: an average over replicas,
    never right (a rate is summed, a per-process figure shown per process). `none`: nothing
    simple (ratios, quantiles, series not limited to one replica).
    """
    found = selectors(promql)
    if found and {selector.name for selector in found} <= DATABASE_FIGURES:
        return "same"
    node = promql_parser.parse(promql)
    while isinstance(node, promql_parser.ParenExpr) or (
        isinstance(node, promql_parser.Call) and node.func.name in ("sort", "sort_desc")
    ):
        node = node.expr if isinstance(node, promql_parser.ParenExpr) else node.args[0]
    if not isinstance(node, promql_parser.AggregateExpr) or node.param is not None:
        return "none"
    op = str(node.op)
    if op not in ("sum", "max", "min", "count", "avg") or not one_by_one(node.expr):
        return "none"
    everything_limited = all(limitable(s.name, s.equal) for s in found)
    return op if everything_limited or op in ("max", "min") else "none"


def one_by_one(node: promql_parser.Expr) -> bool:
    """Whether an expression works on each series alone (no aggregation, no vector matching)."""
    alone = True

    def check(child: promql_parser.Expr) -> None:
        nonlocal alone
        if isinstance(child, promql_parser.AggregateExpr | promql_parser.SubqueryExpr):
            alone = False
        elif isinstance(child, promql_parser.BinaryExpr):
            scalars = (promql_parser.NumberLiteral, promql_parser.StringLiteral)
            alone = alone and (isinstance(child.lhs, scalars) or isinstance(child.rhs, scalars))

    promql_parser.walk(node, check)
    return alone


Answer = dict[frozenset[tuple[str, str]], float]


_ANSWERS: dict[tuple[str, float | None, str], Answer] = {}


def answer(server: Prometheus, promql: str) -> Answer:
    """A query's series, by label set without the metric name, and their values.

    Remembered when asked at a fixed time: the rules' expressions share many parts.
    """
    key = (server.url, server.time, promql)
    if key in _ANSWERS:
        return _ANSWERS[key]
    data = server.query(promql)
    if data["resultType"] == "scalar":
        result: Answer = {frozenset(): float(data["result"][1])}
    else:
        result = {
            frozenset((k, v) for k, v in row["metric"].items() if k != "__name__"): float(
                row["value"][1]
            )
            for row in data["result"]
        }
    if server.time is not None:
        _ANSWERS[key] = result
    return result


COMBINE: dict[str, Callable[[float, float], float]] = {
    "sum": lambda a, b: a + b,
    "count": lambda a, b: a + b,
    "max": max,
    "min": min,
}


def combined(how: str, first: Answer, second: Answer) -> Answer:
    """Two replicas' answers combined as the aggregation over both would."""
    result = dict(first)
    for labels, value in second.items():
        result[labels] = COMBINE[how](result[labels], value) if labels in result else value
    return result


def same_values(left: Answer, right: Answer) -> bool:
    """Equal label sets and values (NaN equal to NaN; sums may round differently)."""
    return left.keys() == right.keys() and all(
        (math.isnan(left[k]) and math.isnan(right[k]))
        or math.isclose(left[k], right[k], rel_tol=1e-9, abs_tol=1e-12)
        for k in left
    )


@pytest.mark.parametrize("expression_id", EXPRESSION_IDS)
def test_every_expression_aggregates_replicas(replicas: Replicas, expression_id: str) -> None:
    expression = expressions_by_id(replicas)[expression_id]
    server = replicas.prometheus
    figures = [expression.promql]
    if expression.alert:
        figures += alert_figures(expression.promql)
    per_instance = expression.id in PER_INSTANCE or expression.panel in PER_INSTANCE
    split = has_rows = False
    for figure in figures:
        whole = one_replica(figure, None)
        # Inside a ratio or a quantile, each aggregation is checked on its own.
        for part in dict.fromkeys([whole, *aggregations(whole)]):
            both = answer(server, part)
            split_by = {name for labels in both for name, _ in labels} & {"instance", "pid"}
            assert per_instance or not split_by, f"{part!r} is split by {split_by}: {both}"
            if part == whole:
                split, has_rows = split or bool(split_by), has_rows or bool(both)
            check_replicas_add_up(server, part, both, replicas.instances)
    if per_instance and has_rows:
        assert split, f"{expression.id} is allowed per instance but is not split"


def aggregations(promql: str) -> list[str]:
    """Every aggregation (`sum by (...) (...)` and the like) inside an expression."""
    found: list[str] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.AggregateExpr):
            found.append(node.prettify())

    promql_parser.walk(promql_parser.parse(promql), visit)
    return found


def check_replicas_add_up(
    server: Prometheus, promql: str, both: Answer, instances: list[str]
) -> None:
    """The answer over both replicas is what `relation` says it is from each replica's answer."""
    how = relation(promql)
    if how == "none":
        return
    assert how != "avg", f"{promql!r} averages replicas"
    first, second = (answer(server, one_replica(promql, instance)) for instance in instances)
    if how == "same":
        # Each replica's own answer, never their sum.
        assert same_values(first, second), f"{promql!r}: replicas differ: {first} {second}"
        assert same_values(both, first), f"{promql!r}: {both} over replicas, {first} on one"
    else:
        expected = combined(how, first, second)
        assert same_values(both, expected), f"{promql!r}: {both}, {how} of replicas {expected}"


def test_the_accuracy_panel_is_what_one_replica_reports_and_request_rate_the_total(
    replicas: Replicas,
) -> None:
    server = replicas.prometheus
    by_id = expressions_by_id(replicas)
    [(labels, shown)] = answer(
        server, by_id["api-overview.json: Model Accuracy [A]"].promql
    ).items()
    window = variable_defaults(load_dashboards()["api-overview.json"])["time_window"]
    for url in replicas.urls:  # what each replica itself says now, the traffic over
        [reported] = [
            sample
            for sample in samples(fresh_get(f"{url}/metrics").text)
            if sample.name == names.MODEL_ACCURACY and sample.labels["time_window"] == window
        ]
        assert (labels, shown) == (
            frozenset({("model_version", reported.labels["model_version"])}),
            reported.value,
        )

    rate_window = replicas.intervals["__rate_interval"]
    each = [
        scalar(
            server, f'sum(rate(api_requests_total{{job="{JOB}", instance="{i}"}}[{rate_window}]))'
        )
        for i in replicas.instances
    ]
    assert all(rate > 0 for rate in each), each
    [(_, shown)] = answer(server, by_id["api-overview.json: Request Rate [A]"].promql).items()
    assert math.isclose(shown, sum(each), rel_tol=1e-9), (shown, each)


# ---- VictoriaMetrics answers as Prometheus does --------------------------------------------------


# What the VictoriaMetrics test compares: every dashboard query that does not read the host's.
VICTORIA_SAMPLE = [
    expression.id for expression in dashboard_expressions({}) if not reads_host(expression.promql)
]


@pytest.mark.parametrize("expression_id", VICTORIA_SAMPLE)
def test_victoriametrics_answers_the_dashboards_queries_as_prometheus(
    replicas: Replicas, expression_id: str
) -> None:
    expression = expressions_by_id(replicas)[expression_id]
    expected = answer(replicas.prometheus, expression.promql)
    got = answer(replicas.victoria, expression.promql)
    # Prometheus answers NaN for 0/0 (a ratio over a window without requests); VictoriaMetrics
    # leaves such series out.
    expected = {labels: value for labels, value in expected.items() if not math.isnan(value)}
    assert got.keys() == expected.keys(), f"{expression.promql!r}: {got} against {expected}"
    assert expected or expression.panel in NO_DATA, f"{expression.promql!r}: nothing to compare"
    if expression.panel in SERIES_ONLY:
        return
    if any(selector.ranged for selector in selectors(expression.promql)):
        assert int(replicas.intervals["__range"].removesuffix("s")) >= MIN_RANGE_S
        worst = max((relative_difference(got[k], expected[k]) for k in expected), default=0.0)
        message = f"{expression.promql!r}: {got} against {expected} ({worst:.2%})"
        assert worst <= RATE_TOLERANCE, message
    else:
        for labels, value in expected.items():
            assert math.isclose(got[labels], value, rel_tol=1e-9, abs_tol=GAUGE_TOLERANCE), (
                f"{expression.promql!r}: {got} against {expected}"
            )


@pytest.mark.parametrize("entry", sorted(NO_DATA.keys() | SERIES_ONLY.keys()))
def test_no_data_entries_name_compared_panels(entry: str) -> None:
    panels = {expression_id.rsplit(" [", 1)[0] for expression_id in VICTORIA_SAMPLE}
    assert entry in panels, f"stale entry {entry}"


def relative_difference(got: float, expected: float) -> float:
    """How far apart two values are, relative to the larger (0 when both are 0)."""
    scale = max(abs(got), abs(expected))
    return abs(got - expected) / scale if scale else 0.0
