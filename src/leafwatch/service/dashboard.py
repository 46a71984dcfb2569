"""The built-in dashboard's figures: traffic from counter snapshots, the rest by SQL aggregates."""

import itertools
import math
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client.metrics_core import Metric
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from leafwatch.model.labels import CLASS_NAMES
from leafwatch.monitor.drift import latest_report
from leafwatch.monitor.estimation import estimated_accuracy
from leafwatch.observe import metrics as names
from leafwatch.schemas_dashboard import (
    AccuracyOut,
    ClassCountsOut,
    DashboardOut,
    DriftOut,
    TrafficOut,
    TrafficPointOut,
    UsageWindowOut,
)
from leafwatch.service.quality import QUALITY_WINDOWS, accuracy_intervals
from leafwatch.storage import usage as usage_figures
from leafwatch.storage.tables import DriftReport, Prediction

# Each usage window, and the window of storage.usage.active_users with the same length.
USAGE_WINDOWS = {"24h": (timedelta(hours=24), "1d"), "7d": (timedelta(days=7), "7d")}
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
QUANTILES = (0.5, 0.95, 0.99)
# The page polls these: counting them would show the dashboard watching itself as traffic.
OWN_ENDPOINTS = ("/dashboard", "/api/v1/dashboard")


@dataclass(frozen=True)
class Snapshot:
    """The request counters at one moment: answers by status class, latency buckets."""

    at: float  # Unix time
    by_status: dict[str, float]
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last

    @property
    def total(self) -> float:
        """Requests answered, all statuses."""
        return sum(self.by_status.values())


def read_snapshot(families: Iterable[Metric], *, at: float) -> Snapshot:
    """Sum the request counter and latency histogram over every endpoint but the dashboard's."""
    by_status = dict.fromkeys(STATUS_CLASSES, 0.0)
    buckets: dict[float, float] = {}
    for family in families:
        for sample in family.samples:
            endpoint = sample.labels.get("endpoint", "")
            if endpoint.startswith(OWN_ENDPOINTS):
                continue
            if sample.name == names.API_REQUESTS:
                status = f"{sample.labels['status'][:1]}xx"
                by_status[status] = by_status.get(status, 0.0) + sample.value
            elif sample.name == f"{names.API_REQUEST_LATENCY}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Snapshot(at=at, by_status=by_status, buckets=tuple(sorted(buckets.items())))


def read_counter(families: Iterable[Metric], sample_name: str, label: str) -> dict[str, float]:
    """A counter's values by one label, summed over the others."""
    values: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            if sample.name == sample_name:
                key = sample.labels[label]
                values[key] = values.get(key, 0.0) + sample.value
    return values


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative buckets, interpolated linearly inside its bucket.

    As Prometheus' histogram_quantile: a quantile in the +Inf bucket is the highest finite
    bound, the first bucket starts at 0; None without observations.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def interval_point(before: Snapshot, after: Snapshot) -> TrafficPointOut:
    """Rates and latency percentiles between two snapshots of the same counters."""
    seconds = after.at - before.at
    answered = {
        status: after.by_status.get(status, 0.0) - before.by_status.get(status, 0.0)
        for status in STATUS_CLASSES
    }
    total = sum(answered.values())
    previous = dict(before.buckets)
    delta = [(bound, count - previous.get(bound, 0.0)) for bound, count in after.buckets]
    percentiles = [histogram_quantile(q, delta) for q in QUANTILES]
    p50, p95, p99 = (None if value is None else value * 1000 for value in percentiles)
    return TrafficPointOut(
        at=datetime.fromtimestamp(after.at, UTC),
        seconds=seconds,
        requests_per_second=total / seconds,
        by_status={status: count / seconds for status, count in answered.items()},
        error_rate=answered["5xx"] / total if total > 0 else None,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
    )


@dataclass
class TrafficHistory:
    """Recent snapshots of the request counters, taken as the dashboard asks for data.

    Kept by the server, not the browser, so a page opened late, or a second one, sees the same
    history. Snapshots closer than `min_spacing_s` are not kept (many open pages cost nothing
    more); a counter that went down means the process restarted, and the history starts over.
    """

    keep_s: float = 900.0
    min_spacing_s: float = 1.0
    _snapshots: deque[Snapshot] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, snapshot: Snapshot) -> None:
        """Add a snapshot, unless the previous one is too recent."""
        with self._lock:
            snapshots = self._snapshots
            if snapshots and _went_down(snapshots[-1], snapshot):
                snapshots.clear()
            if snapshots and snapshot.at - snapshots[-1].at < self.min_spacing_s:
                return
            snapshots.append(snapshot)
            while snapshots and snapshot.at - snapshots[0].at > self.keep_s:
                snapshots.popleft()

    def traffic(self) -> TrafficOut:
        """One point per pair of consecutive snapshots, and the totals of the latest."""
        with self._lock:
            snapshots = list(self._snapshots)
        points = [interval_point(a, b) for a, b in itertools.pairwise(snapshots)]
        totals = dict(snapshots[-1].by_status) if snapshots else dict.fromkeys(STATUS_CLASSES, 0.0)
        return TrafficOut(points=points, totals_by_status=totals)


def _went_down(before: Snapshot, after: Snapshot) -> bool:
    return after.total < before.total


def predictions_by_class(session: Session, *, as_of: datetime) -> list[ClassCountsOut]:
    """Predictions per predicted class over each usage window, in one query."""
    columns = [
        func.coalesce(func.sum(case((Prediction.timestamp >= as_of - length, 1), else_=0)), 0)
        for length, _ in USAGE_WINDOWS.values()
    ]
    query = (
        select(Prediction.predicted_class_name, *columns)
        .where(
            Prediction.timestamp >= as_of - max(length for length, _ in USAGE_WINDOWS.values()),
            Prediction.timestamp < as_of,
        )
        .group_by(Prediction.predicted_class_name)
    )
    counts = {window: dict.fromkeys(CLASS_NAMES, 0) for window in USAGE_WINDOWS}
    for name, *sums in session.execute(query):
        for window, value in zip(USAGE_WINDOWS, sums, strict=True):
            counts[window][name] = int(value)
    return [ClassCountsOut(window=window, counts=counts[window]) for window in USAGE_WINDOWS]


def usage(session: Session, *, as_of: datetime) -> list[UsageWindowOut]:
    """Predictions, distinct users and the share with a verdict over each usage window."""
    users = usage_figures.active_users(session, as_of=as_of)
    windows = []
    for window, (length, active) in USAGE_WINDOWS.items():
        made, reviewed = usage_figures.judged_predictions(
            session, since=as_of - length, until=as_of
        )
        windows.append(
            UsageWindowOut(
                window=window,
                predictions=made,
                active_users=users[active],
                reviewed=reviewed,
                feedback_rate=reviewed / made if made else None,
            )
        )
    return windows


def accuracy(session: Session, *, as_of: datetime) -> list[AccuracyOut]:
    """Per version and window: realized accuracy with its 95% Wilson interval, and the estimate.

    A version with predictions but no verdict yet still has its estimate: that is the point of
    estimating before feedback.
    """
    realized = {
        (figure.model_version, figure.window): figure
        for figure in accuracy_intervals(session, as_of=as_of, windows=QUALITY_WINDOWS)
    }
    estimates = {
        (figure.model_version, figure.window): figure.estimated
        for figure in estimated_accuracy(session, as_of=as_of, windows=QUALITY_WINDOWS)
    }
    order = list(QUALITY_WINDOWS)
    rows = []
    for version, window in sorted(
        realized.keys() | estimates.keys(), key=lambda key: (key[0], order.index(key[1]))
    ):
        figure = realized.get((version, window))
        rows.append(
            AccuracyOut(
                model_version=version,
                window=window,
                reviewed=figure.reviewed if figure else 0,
                correct=figure.correct if figure else 0,
                accuracy=figure.accuracy if figure else None,
                lower=figure.wilson_low if figure else None,
                upper=figure.wilson_high if figure else None,
                estimated=estimates.get((version, window)),
            )
        )
    return rows


def drift(report: DriftReport | None) -> DriftOut | None:
    """The scores of a drift report, as the page draws them."""
    if report is None:
        return None
    return DriftOut(
        run_at=report.run_at,
        model_version=report.model_version,
        status=report.status,
        drifted=report.drifted,
        scores=dict(report.scores),
    )


def dashboard_data(
    session: Session,
    *,
    families: Iterable[Metric],
    history: TrafficHistory,
    now: datetime,
    model_name: str | None,
    model_version: str | None,
) -> DashboardOut:
    """Every figure of the page: counters from `families`, the rest from the database."""
    families = list(families)
    history.record(read_snapshot(families, at=now.timestamp()))
    return DashboardOut(
        generated_at=now,
        model_name=model_name,
        model_version=model_version,
        traffic=history.traffic(),
        predictions_by_class=predictions_by_class(session, as_of=now),
        accuracy=accuracy(session, as_of=now),
        drift=drift(latest_report(session)),
        rejected_uploads=read_counter(families, names.API_REJECTED_UPLOADS, "reason"),
        usage=usage(session, as_of=now),
    )
