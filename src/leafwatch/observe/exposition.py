"""What /metrics answers: the instruments of every worker, plus figures computed at scrape time."""

import glob
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from leafwatch.observe import metrics as names
from leafwatch.observe.metrics import Metrics

T = TypeVar("T")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own switch to multiprocess mode
_PID_IN_FILENAME = re.compile(r"_(\d+)\.db$")


def multiprocess_dir() -> Path | None:
    """The multiprocess directory when `leafwatch serve --workers N` (or the user) set one."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def reset_multiprocess_dir(directory: Path) -> None:
    """Create the directory, or empty it of a previous run's files, before workers start."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        path.unlink()


def instrument_registry(multiprocess: bool) -> CollectorRegistry:
    """The registry instruments are created on; in one process it also carries process metrics."""
    # A text-format scrape stores each `_created` sample as a series of its own, doubling every
    # counter and histogram; Prometheus finds resets without them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    if not multiprocess:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class Exposition(Collector):
    """Every family /metrics shows, rendered in the format the scraper asks for."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        directory: Path | None,
        error_rate_window_s: float,
        extra: Iterable[Collector] = (),
    ) -> None:
        self.directory = directory
        if directory is None:
            self.source: Collector = metrics.registry
        else:
            # Counters from every worker, dead ones included, so sums never go backwards.
            source = CollectorRegistry()
            MultiProcessCollector(source, path=str(directory))  # type: ignore[no-untyped-call]
            PlatformCollector(registry=source)
            source.register(WorkerProcesses(directory))
            self.source = source
        self.error_rates = ErrorRateWindow(error_rate_window_s)
        # The first reading, at start, is the baseline until one is a whole window old.
        self.error_rates.update(time.monotonic(), self.source.collect())
        self.extra = list(extra)

    def collect(self) -> Iterable[Metric]:
        families = list(self.source.collect())
        yield from families
        yield names.error_rate_family(self.error_rates.update(time.monotonic(), families))
        yield names.build_info_family()
        for collector in self.extra:
            yield from collector.collect()

    def render(self, accept: str) -> tuple[bytes, str]:
        """The exposition body and its content type: OpenMetrics (with exemplars) if asked for."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self), content_type


class ErrorRateWindow:
    """Share of 5xx answers per endpoint over a sliding window of `api_requests_total` readings."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._readings: deque[tuple[float, dict[str, tuple[float, float]]]] = deque()
        self._lock = threading.Lock()

    def update(self, now: float, families: Iterable[Metric]) -> dict[str, float]:
        """Record the counters as they are now; return each endpoint's rate over the window.

        The baseline is the newest reading at least a window old, or the oldest reading while
        none is. An endpoint without requests in the window has a rate of 0.
        """
        current = _totals_by_endpoint(families)
        with self._lock:
            readings = self._readings
            while len(readings) > 1 and now - readings[1][0] >= self.window_s:
                readings.popleft()
            baseline = readings[0][1] if readings else {}
            if not readings or now - readings[-1][0] >= 1.0:  # bounded memory under rapid scrapes
                readings.append((now, current))
        rates = {}
        for endpoint, (total, errors) in current.items():
            base_total, base_errors = baseline.get(endpoint, (0.0, 0.0))
            answered = total - base_total
            rates[endpoint] = (errors - base_errors) / answered if answered > 0 else 0.0
        return rates


def _totals_by_endpoint(families: Iterable[Metric]) -> dict[str, tuple[float, float]]:
    totals: dict[str, tuple[float, float]] = {}
    for family in families:
        for sample in family.samples:
            if sample.name != names.API_REQUESTS:
                continue
            endpoint = sample.labels["endpoint"]
            total, errors = totals.get(endpoint, (0.0, 0.0))
            is_error = sample.labels["status"].startswith("5")
            totals[endpoint] = (total + sample.value, errors + (sample.value if is_error else 0.0))
    return totals


class WorkerProcesses(Collector):
    """Process metrics (CPU, memory, files) of every live worker, labelled by pid."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for pid in self.live_pids():
            collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
            for family in collector.collect():
                target = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    target.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        return merged.values()

    def live_pids(self) -> list[int]:
        """Pids with files in the directory that are still running; marks the others dead."""
        pids = set()
        for path in glob.glob(str(self.directory / "*.db")):
            match = _PID_IN_FILENAME.search(path)
            if match:
                pids.add(int(match.group(1)))
        alive = []
        for pid in sorted(pids):
            if _is_running(pid):
                alive.append(pid)
            else:
                # A worker killed without a clean shutdown: drop its live gauges (active requests).
                mark_dead(pid, self.directory)
        return alive


def mark_dead(pid: int, directory: Path) -> None:
    """Drop a stopped worker's live gauges; its counters stay, so sums never go backwards."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FunctionCollector(Collector):
    """A collector over a function returning families (the seam for scrape-time figures)."""

    def __init__(self, produce: Callable[[], Iterable[Metric]]) -> None:
        self.produce = produce

    def collect(self) -> Iterable[Metric]:
        return self.produce()


class PeriodCache(Generic[T]):
    """Figures from the database, recomputed at most once per period.

    Each period's figures are computed as of the period's start (for accuracy: predictions made
    and verdicts given before it), so every worker reports the same values, whenever scraped.
    """

    def __init__(self, compute: Callable[[float], T], *, period_s: float) -> None:
        self.compute = compute
        self.period_s = period_s
        self._lock = threading.Lock()
        self._as_of: float | None = None
        self._figures: T

    def figures(self, now: float | None = None) -> T:
        """The figures as of the start of the current period."""
        now = time.time() if now is None else now
        as_of = now - now % self.period_s if self.period_s > 0 else now
        with self._lock:
            if as_of != self._as_of:
                self._figures = self.compute(as_of)
                self._as_of = as_of
            return self._figures
