"""Which alerts fire: read from Prometheus, from Alertmanager, or worked out from LeafWatch itself.

Each source answers, when polled, the set of alert names firing now (None: it could not be read).
Without Prometheus, LeafWatch's own figures (/metrics) stand in: the shipped rules' conditions,
evaluated here over a window scaled like the rules, but without their `for:` durations.
"""

import asyncio
import math
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from leafwatch.observe import metrics as names
from leafwatch.simulate.timeline import Episode, episodes

# Routes left out of the served-request figures, as in deploy/prometheus/rules/recording.yml.
_NOT_SERVED = ("/metrics", "/health", "/ready", "unmatched")
# Shipped thresholds (deploy/prometheus/rules/leafwatch-alerts.yml).
ERROR_RATIO = 0.05
MIN_RATE = 0.1
LATENCY_P95_S = 1.0
ACCURACY_UPPER = 0.75
MIN_REVIEWED = 50
DRIFT_RUNS = 3
DRIFT_SCORES = {
    "image_statistics": 0.1,
    "prediction_distribution": 0.05,
    "confidence": 0.05,
    "embedding": 0.02,
}


class AlertSource(Protocol):
    """Somewhere to read the alerts firing now from."""

    name: str

    @property
    def knows(self) -> frozenset[str] | None:
        """Alerts this source can report; None: any."""
        ...

    @property
    def pending(self) -> frozenset[str]:
        """Alerts on their way at the last poll: waiting out a `for:`, or a drift streak."""
        ...

    async def firing(self, client: httpx.AsyncClient) -> frozenset[str] | None:
        """Names of the alerts firing now; None if the source could not be read."""
        ...


class PrometheusAlerts:
    """Prometheus's /api/v1/alerts: alerts in state `firing` (past their `for:`)."""

    knows: frozenset[str] | None = None

    def __init__(self, url: str) -> None:
        self.name = "prometheus"
        self.url = url.rstrip("/")
        self.pending: frozenset[str] = frozenset()  # waiting out their `for:` at the last poll

    async def firing(self, client: httpx.AsyncClient) -> frozenset[str] | None:
        """Names of the alerts Prometheus has firing."""
        try:
            answer = await client.get(f"{self.url}/api/v1/alerts", timeout=5)
            alerts = answer.raise_for_status().json()["data"]["alerts"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None
        self.pending = frozenset(
            a["labels"]["alertname"] for a in alerts if a["state"] == "pending"
        )
        return frozenset(a["labels"]["alertname"] for a in alerts if a["state"] == "firing")


class AlertmanagerAlerts:
    """Alertmanager's /api/v2/alerts: alerts it holds as active (not silenced nor inhibited)."""

    knows: frozenset[str] | None = None
    pending: frozenset[str] = frozenset()  # Alertmanager holds no alert on its way

    def __init__(self, url: str) -> None:
        self.name = "alertmanager"
        self.url = url.rstrip("/")

    async def firing(self, client: httpx.AsyncClient) -> frozenset[str] | None:
        """Names of the alerts Alertmanager notifies about."""
        try:
            answer = await client.get(
                f"{self.url}/api/v2/alerts", params={"active": "true"}, timeout=5
            )
            alerts = answer.raise_for_status().json()
        except (httpx.HTTPError, ValueError):
            return None
        return frozenset(
            a["labels"]["alertname"] for a in alerts if a.get("status", {}).get("state") == "active"
        )


@dataclass(frozen=True)
class Scrape:
    """The samples of one /metrics answer that the conditions need."""

    at: float
    requests: dict[tuple[str, str], float]  # (endpoint, status class) -> count
    latency_buckets: dict[float, float]  # le -> count, served routes summed
    injected: float
    served_version: str | None
    accuracy: list[tuple[str, float, float]]  # (model_version, upper bound, reviewed)
    drift_runs: float
    drift_scores: dict[str, float]


def parse_scrape(text: str, at: float) -> Scrape:
    """The figures of a /metrics body in the text format."""
    requests: dict[tuple[str, str], float] = {}
    buckets: dict[float, float] = {}
    injected, runs = 0.0, 0.0
    served: str | None = None
    upper: dict[tuple[str, str], float] = {}
    reviewed: dict[tuple[str, str], float] = {}
    scores: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == names.API_REQUESTS:
                key = (labels["endpoint"], labels["status"][:1])
                requests[key] = requests.get(key, 0.0) + sample.value
            elif sample.name == f"{names.API_REQUEST_LATENCY}_bucket":
                if labels["endpoint"] not in _NOT_SERVED:
                    edge = float(labels["le"])
                    buckets[edge] = buckets.get(edge, 0.0) + sample.value
            elif sample.name == names.INJECTED_FAULTS:
                injected += sample.value
            elif sample.name == names.MODEL_INFO and sample.value == 1:
                served = labels.get("model_version")
            elif sample.name == names.MODEL_ACCURACY_UPPER:
                upper[labels["model_version"], labels["time_window"]] = sample.value
            elif sample.name == names.MODEL_ACCURACY_FEEDBACK:
                reviewed[labels["model_version"], labels["time_window"]] = sample.value
            elif sample.name == names.DATA_DRIFT_CONSECUTIVE_RUNS:
                runs = sample.value
            elif sample.name == names.DATA_DRIFT_SCORE:
                scores[labels["metric_type"]] = sample.value
    accuracy = [(key[0], value, reviewed.get(key, 0.0)) for key, value in upper.items()]
    return Scrape(at, requests, buckets, injected, served, accuracy, runs, scores)


def conditions(newest: Scrape, oldest: Scrape) -> frozenset[str]:
    """The shipped alerts whose conditions hold between two scrapes (no `for:`)."""
    firing = set()
    seconds = max(newest.at - oldest.at, 1e-9)
    served = {k: v for k, v in newest.requests.items() if k[0] not in _NOT_SERVED}
    total = sum(v - oldest.requests.get(k, 0.0) for k, v in served.items())
    errors = sum(v - oldest.requests.get(k, 0.0) for k, v in served.items() if k[1] == "5")
    if total > 0 and total / seconds >= MIN_RATE:
        if errors / total > ERROR_RATIO:
            firing.add("HighErrorRate")
        p95 = quantile(0.95, newest.latency_buckets, oldest.latency_buckets)
        if p95 is not None and p95 > LATENCY_P95_S:
            firing.add("HighLatency")
    if newest.injected > oldest.injected:
        firing.add("FaultInjectionActive")
    for version, upper, reviewed in newest.accuracy:
        if version == newest.served_version and upper < ACCURACY_UPPER and reviewed >= MIN_REVIEWED:
            firing.add("ModelAccuracyDrop")
    scores = newest.drift_scores
    if newest.drift_runs >= DRIFT_RUNS and any(
        scores.get(kind, 0.0) >= threshold for kind, threshold in DRIFT_SCORES.items()
    ):
        firing.add("DataDriftDetected")
    return frozenset(firing)


def quantile(q: float, newest: dict[float, float], oldest: dict[float, float]) -> float | None:
    """The q-quantile of the observations between two readings of cumulative histogram buckets.

    Interpolated linearly inside the bucket, as Prometheus's histogram_quantile does.
    """
    edges = sorted(newest)
    counts = [newest[edge] - oldest.get(edge, 0.0) for edge in edges]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower_edge, lower_count = 0.0, 0.0
    for edge, count in zip(edges, counts, strict=True):
        if count >= rank:
            if math.isinf(edge):
                return lower_edge
            inside = count - lower_count
            share = (rank - lower_count) / inside if inside > 0 else 1.0
            return lower_edge + (edge - lower_edge) * share
        lower_edge, lower_count = edge, count
    return lower_edge


class LeafWatchAlerts:
    """The shipped alerts' conditions, evaluated over LeafWatch's own /metrics."""

    knows: frozenset[str] | None = frozenset(
        {
            "APIDown",
            "HighErrorRate",
            "HighLatency",
            "FaultInjectionActive",
            "ModelAccuracyDrop",
            "DataDriftDetected",
        }
    )

    def __init__(self, url: str, *, window_s: float, token: str | None = None) -> None:
        self.name = "leafwatch"
        self.url = url.rstrip("/")
        self.window_s = window_s
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.scrapes: deque[Scrape] = deque()
        self.pending: frozenset[str] = frozenset()

    async def firing(self, client: httpx.AsyncClient) -> frozenset[str] | None:
        """The conditions over the last window; APIDown when /metrics does not answer."""
        try:
            answer = await client.get(f"{self.url}/metrics", headers=self.headers, timeout=2)
            answer.raise_for_status()
        except httpx.HTTPError:
            return frozenset({"APIDown"})
        now = time.monotonic()
        try:
            self.scrapes.append(parse_scrape(answer.text, now))
        except (ValueError, KeyError):  # not LeafWatch's exposition: nothing to judge
            return None
        while len(self.scrapes) > 2 and self.scrapes[1].at <= now - self.window_s:
            self.scrapes.popleft()
        # A drift streak under way: the latest run flagged drift, the alert may follow.
        streak = self.scrapes[-1].drift_runs > 0
        self.pending = frozenset({"DataDriftDetected"} if streak else ())
        return conditions(self.scrapes[-1], self.scrapes[0])


class Observer:
    """Polls every source about once a second and keeps what each saw, with times."""

    def __init__(
        self,
        sources: Sequence[AlertSource],
        *,
        leafwatch_url: str,
        origin: float | None = None,
    ) -> None:
        self.sources = list(sources)
        self.leafwatch_url = leafwatch_url.rstrip("/")
        self.origin = time.monotonic() if origin is None else origin
        self.samples: dict[str, list[tuple[float, frozenset[str]]]] = {
            source.name: [] for source in self.sources
        }
        self.current: dict[str, frozenset[str]] = {}
        self.served_version: str | None = None

    @property
    def primary(self) -> AlertSource:
        """The source phases wait on: Prometheus if given, else the first one."""
        for source in self.sources:
            if source.name == "prometheus":
                return source
        return self.sources[0]

    def now(self) -> float:
        """Seconds since the simulation began."""
        return time.monotonic() - self.origin

    async def watch(self, client: httpx.AsyncClient, *, interval: float = 1.0) -> None:
        """Poll each source, and LeafWatch's model version, in its own loop until cancelled.

        Separate loops: a source that hangs (LeafWatch in an outage) does not delay the others.
        """
        loops = [self._watch_source(client, source, interval) for source in self.sources]
        await asyncio.gather(*loops, self._watch_version(client, interval))

    async def poll(self, client: httpx.AsyncClient) -> None:
        """Read every source once, and the model version LeafWatch serves."""
        await asyncio.gather(
            *(self._read(client, source) for source in self.sources), self._read_version(client)
        )

    async def _watch_source(
        self, client: httpx.AsyncClient, source: AlertSource, interval: float
    ) -> None:
        while True:
            started = time.monotonic()
            await self._read(client, source)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _watch_version(self, client: httpx.AsyncClient, interval: float) -> None:
        while True:
            started = time.monotonic()
            await self._read_version(client)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _read(self, client: httpx.AsyncClient, source: AlertSource) -> None:
        firing = await source.firing(client)
        if firing is not None:
            self.current[source.name] = firing
            self.samples[source.name].append((self.now(), firing))

    async def _read_version(self, client: httpx.AsyncClient) -> None:
        try:
            answer = await client.get(f"{self.leafwatch_url}/model/info", timeout=2)
            if answer.status_code == 200:
                self.served_version = str(answer.json()["model_version"])
        except (httpx.HTTPError, ValueError, KeyError):
            pass  # away (an outage): the last version seen stands

    def firing(self, source: AlertSource | None = None) -> frozenset[str]:
        """What a source (the primary one by default) saw firing at its last poll."""
        return self.current.get((source or self.primary).name, frozenset())

    def pending(self) -> frozenset[str]:
        """What any source saw on its way at its last poll."""
        return frozenset().union(*(source.pending for source in self.sources))

    def fired_since(self, moment: float, source: AlertSource | None = None) -> set[str]:
        """Alerts a source (the primary one) saw firing at any poll since `moment`."""
        seen: set[str] = set()
        for at, firing in self.samples[(source or self.primary).name]:
            if at >= moment:
                seen |= firing
        return seen

    def episodes(self) -> dict[str, list[Episode]]:
        """Every source's alert episodes so far."""
        return {name: episodes(samples) for name, samples in self.samples.items()}

    def can_report(self, alerts: Iterable[str]) -> set[str]:
        """Of `alerts`, those the primary source can report at all."""
        knows = self.primary.knows
        return set(alerts) if knows is None else set(alerts) & knows
