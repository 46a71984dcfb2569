"""Every LeafWatch metric: its name, help text and labels, on a registry passed in.

Alert rules and dashboards use only the names defined here. Instruments (counters, histograms,
gauges) are updated as things happen; the `*_family` functions build the figures computed at
scrape time (from the database, the loaded model, the counters' recent history).
"""

import platform
from collections.abc import Iterable, Mapping
from datetime import timedelta
from importlib.metadata import version as package_version
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from leafwatch import __version__
from leafwatch.errors import INVALID_IMAGE_CODES
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.monitor.estimation import EstimatedAccuracy, EstimationGap
from leafwatch.monitor.statistics import wilson_interval
from leafwatch.schemas import FeedbackSource
from leafwatch.storage.queries import VersionAccuracy
from leafwatch.storage.tables import DriftReport

# They bracket the latency objectives (docs/slo.md): a bucket edge on each threshold an SLO or an
# alert uses, so `histogram_quantile` and good/total ratios are exact there, not interpolated.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

ACCURACY_WINDOWS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}

API_REQUESTS = "api_requests_total"
API_REQUEST_LATENCY = "api_request_latency_seconds"
API_REJECTED_UPLOADS = "api_rejected_uploads_total"
API_ERROR_RATE = "api_error_rate"
INJECTED_FAULTS = "api_injected_faults_total"
API_RATE_LIMITED = "api_rate_limited_total"
MODEL_ACCURACY = "model_accuracy"
MODEL_ACCURACY_FEEDBACK = "model_accuracy_feedback_count"
MODEL_ACCURACY_LOWER = "model_accuracy_lower_bound"
MODEL_ACCURACY_UPPER = "model_accuracy_upper_bound"
MODEL_ESTIMATED_ACCURACY = "model_estimated_accuracy"
MODEL_ESTIMATION_GAP = "model_accuracy_estimation_gap"
MODEL_ESTIMATION_GAP_OUTSIDE = "model_accuracy_estimation_gap_outside_interval"
USAGE_ACTIVE_USERS = "usage_active_users"
USAGE_FEEDBACK_RATE = "usage_feedback_rate"
MODEL_CLASS_ACCURACY = "model_class_accuracy"
MODEL_CLASS_ACCURACY_FEEDBACK = "model_class_accuracy_feedback_count"
MODEL_INFO = "model_info"
MODEL_LOADED = "model_loaded"
BUILD_INFO = "leafwatch_build_info"
DATA_DRIFT_SCORE = "data_drift_score"
DATA_DRIFT_FEATURE_STATISTIC = "data_drift_feature_statistic"
DATA_DRIFT_FEATURE_DRIFTED = "data_drift_feature_drifted"
DATA_DRIFT_DETECTED = "data_drift_detected"
DATA_DRIFT_CONSECUTIVE_RUNS = "data_drift_consecutive_runs"
DATA_DRIFT_RETRAINING = "data_drift_retraining_recommended"
DATA_DRIFT_SAMPLES = "data_drift_current_samples"
DATA_DRIFT_LAST_RUN = "data_drift_last_run_timestamp_seconds"
SPOOL_DEPTH = "spool_depth"
SPOOL_RECORDS = "spool_records_total"
SPOOL_KINDS = ("prediction", "feedback")
SPOOL_OUTCOMES = ("spooled", "replayed", "rejected")
IMAGES_DELETED = "images_deleted_total"
SCHEDULED_RUNS = "scheduled_job_runs_total"
# The name prometheus_client's GCCollector gives it in one process, so one panel reads both.
GC_COLLECTIONS = "python_gc_collections_total"
SCHEDULED_STATUSES = ("done", "failed")  # how a run ends, as the job_runs table records it
ALERT_EVENTS = "alert_events_total"
# Alert names come from the rules, a few dozen; past this many, a process counts them as `other`.
MAX_ALERT_NAMES = 50


class Metrics:
    """LeafWatch's instruments, registered on one registry."""

    def __init__(self, registry: CollectorRegistry, *, multiprocess: bool = False) -> None:
        self.registry = registry
        self.multiprocess = multiprocess
        # Requests in flight, counted by the middleware on the event loop's thread.
        self.in_flight = 0
        self.requests = Counter(
            API_REQUESTS,
            "HTTP requests answered, by method, route template and status (499: client left).",
            ["method", "endpoint", "status"],
            registry=registry,
        )
        self.request_latency = Histogram(
            API_REQUEST_LATENCY,
            "Time from request to the last byte of the answer, background tasks excluded.",
            ["method", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.active_requests = Gauge(
            "api_active_requests",
            "Requests being answered now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        if not multiprocess:
            # Read when scraped: a plain count costs a request less than a locked gauge update.
            # Workers' counts must add up through the shared files, so there it is inc and dec.
            self.active_requests.set_function(lambda: self.in_flight)
        # One process has the client's GCCollector. Workers cannot read each other's collector, so
        # each counts its own collections into the shared files (a sum per replica).
        self._gc_runs: dict[int, Counter] = {}
        if multiprocess:
            gc_runs = Counter(
                GC_COLLECTIONS.removesuffix("_total"),
                "Garbage collections the workers ran, by generation.",
                ["generation"],
                registry=registry,
            )
            self._gc_runs = {g: gc_runs.labels(generation=str(g)) for g in range(3)}
        self.predictions = Counter(
            "model_predictions_total",
            "Predictions made, by model version and predicted class.",
            ["model_version", "predicted_class"],
            registry=registry,
        )
        self.inference_latency = Histogram(
            "model_inference_latency_seconds",
            "Time the model takes for one image (decode and storage excluded).",
            ["model_version"],
            buckets=INFERENCE_BUCKETS,
            registry=registry,
        )
        self.confidence = Histogram(
            "model_prediction_confidence",
            "Probability the model gave its predicted class, by model version and class.",
            ["model_version", "predicted_class"],
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.feedback = Counter(
            "feedback_submissions_total",
            "Verdicts received on predictions, by correctness and source.",
            ["is_correct", "feedback_source"],
            registry=registry,
        )
        self.rejected_uploads = Counter(
            API_REJECTED_UPLOADS,
            "Uploads refused before reaching the model, by reason.",
            ["reason"],
            registry=registry,
        )
        self.injected_faults = Counter(
            INJECTED_FAULTS,
            "Faults injected through the admin fault switch, by route template and kind.",
            ["endpoint", "kind"],
            registry=registry,
        )
        self.rate_limited = Counter(
            API_RATE_LIMITED,
            "Requests refused with 429 because their client was over its rate limit.",
            registry=registry,
        )
        self.spool_records = Counter(
            SPOOL_RECORDS,
            "Records the database could not take at once: spooled, then replayed or rejected.",
            ["kind", "outcome"],
            registry=registry,
        )
        self.alert_events = Counter(
            ALERT_EVENTS,
            "Alerts received from Alertmanager, by alert name, status and the action taken.",
            ["alertname", "status", "action"],
            registry=registry,
        )
        self._alert_names: set[str] = set()
        self.images_deleted = Counter(
            IMAGES_DELETED,
            "Stored images deleted because they were older than the retention period.",
            registry=registry,
        )
        # `task`, not `job`: Prometheus gives every series the `job` of the scrape.
        self.scheduled_runs = Counter(
            SCHEDULED_RUNS,
            "Periodic jobs (drift, rollups...) this process claimed and ran, by task and ending.",
            ["task", "status"],
            registry=registry,
        )
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        # Zero-valued series from the start, so rate() and increase() see the first event.
        for reason in INVALID_IMAGE_CODES:
            self.rejected_uploads.labels(reason=reason)
        for is_correct in ("true", "false"):
            for source in get_args(FeedbackSource):
                self.feedback.labels(is_correct=is_correct, feedback_source=source)
        for kind in SPOOL_KINDS:
            for outcome in SPOOL_OUTCOMES:
                self.spool_records.labels(kind=kind, outcome=outcome)

    def count_gc(self, phase: str, info: dict[str, int]) -> None:
        """A `gc.callbacks` hook: one more collection of its generation (with several workers)."""
        if phase == "stop" and (child := self._gc_runs.get(info["generation"])) is not None:
            child.inc()

    def request_started(self) -> None:
        """One more request in flight."""
        if self.multiprocess:
            self.active_requests.inc()
        else:
            self.in_flight += 1

    def request_ended(self) -> None:
        """One request fewer in flight."""
        if self.multiprocess:
            self.active_requests.dec()
        else:
            self.in_flight -= 1

    def record_request(
        self,
        *,
        method: str,
        endpoint: str,
        status: int,
        seconds: float,
        exemplar: dict[str, str] | None,
    ) -> None:
        """Count one answered request and observe its latency."""
        key = (method, endpoint, status)
        series = self._request_series.get(key)
        if series is None:
            # labels() takes a lock and builds a key each time: the series are looked up once.
            series = self._request_series[key] = (
                self.requests.labels(method=method, endpoint=endpoint, status=str(status)),
                self.request_latency.labels(method=method, endpoint=endpoint),
            )
        series[0].inc()
        series[1].observe(seconds, exemplar=exemplar)

    def prepare_model(self, model_version: str) -> None:
        """Create a model version's series at zero, before its first prediction."""
        self.inference_latency.labels(model_version=model_version)
        for name in CLASS_NAMES:
            self.predictions.labels(model_version=model_version, predicted_class=name)

    def record_prediction(
        self, *, model_version: str, predicted_class: str, confidence: float, inference_s: float
    ) -> None:
        """Count one prediction and observe its inference time and confidence."""
        labels = {"model_version": model_version, "predicted_class": predicted_class}
        self.predictions.labels(**labels).inc()
        self.confidence.labels(**labels).observe(confidence)
        self.inference_latency.labels(model_version=model_version).observe(inference_s)

    def prepare_scheduled_task(self, task: str) -> None:
        """Create a periodic job's series at zero, before its first run."""
        for status in SCHEDULED_STATUSES:
            self.scheduled_runs.labels(task=task, status=status)

    def record_scheduled_run(self, task: str, status: str) -> None:
        """Count one run of a periodic job, claimed by this process for its period."""
        self.scheduled_runs.labels(task=task, status=status).inc()

    def record_feedback(self, *, is_correct: bool, feedback_source: str) -> None:
        """Count one verdict."""
        label = "true" if is_correct else "false"
        self.feedback.labels(is_correct=label, feedback_source=feedback_source).inc()

    def record_alert_event(self, *, alertname: str, status: str, action: str) -> None:
        """Count one alert received; names beyond the first MAX_ALERT_NAMES count as `other`."""
        if alertname not in self._alert_names:
            if len(self._alert_names) < MAX_ALERT_NAMES:
                self._alert_names.add(alertname)
            else:
                alertname = "other"
        self.alert_events.labels(alertname=alertname, status=status, action=action).inc()


def error_rate_family(rates: Mapping[str, float]) -> GaugeMetricFamily:
    """`api_error_rate{endpoint}`: share of answers that were 5xx over the recent window."""
    family = GaugeMetricFamily(
        API_ERROR_RATE,
        "Share of answers with a 5xx status over the recent window (0 without requests in it).",
        labels=["endpoint"],
    )
    for endpoint, rate in sorted(rates.items()):
        family.add_metric([endpoint], rate)
    return family


def accuracy_families(
    figures: Iterable[VersionAccuracy], by_class: Iterable[VersionAccuracy] = ()
) -> list[GaugeMetricFamily]:
    """`model_accuracy`, per predicted class too, and the reviewed predictions behind each."""
    accuracy = GaugeMetricFamily(
        MODEL_ACCURACY,
        "Share of reviewed predictions that were right, over predictions made in the window.",
        labels=["model_version", "time_window"],
    )
    count = GaugeMetricFamily(
        MODEL_ACCURACY_FEEDBACK,
        "Reviewed predictions (one effective verdict each) behind model_accuracy.",
        labels=["model_version", "time_window"],
    )
    class_accuracy = GaugeMetricFamily(
        MODEL_CLASS_ACCURACY,
        "Share of reviewed predictions of each predicted class that were right (its precision).",
        labels=["model_version", "predicted_class", "time_window"],
    )
    class_count = GaugeMetricFamily(
        MODEL_CLASS_ACCURACY_FEEDBACK,
        "Reviewed predictions of each predicted class behind model_class_accuracy.",
        labels=["model_version", "predicted_class", "time_window"],
    )
    lower = GaugeMetricFamily(
        MODEL_ACCURACY_LOWER,
        "Lower end of the 95% Wilson interval around model_accuracy.",
        labels=["model_version", "time_window"],
    )
    upper = GaugeMetricFamily(
        MODEL_ACCURACY_UPPER,
        "Upper end of the 95% Wilson interval around model_accuracy (alerts compare this).",
        labels=["model_version", "time_window"],
    )
    for figure in figures:
        labels = [figure.model_version, figure.window]
        count.add_metric(labels, figure.reviewed)
        interval = wilson_interval(figure.correct, figure.reviewed)
        if interval is not None:
            accuracy.add_metric(labels, figure.correct / figure.reviewed)
            lower.add_metric(labels, interval[0])
            upper.add_metric(labels, interval[1])
    for figure in by_class:
        labels = [figure.model_version, figure.predicted_class or "", figure.window]
        class_count.add_metric(labels, figure.reviewed)
        if figure.reviewed:
            class_accuracy.add_metric(labels, figure.correct / figure.reviewed)
    return [accuracy, count, lower, upper, class_accuracy, class_count]


def estimation_families(
    estimates: Iterable[EstimatedAccuracy], gaps: Iterable[EstimationGap]
) -> list[GaugeMetricFamily]:
    """Accuracy expected from the calibrated confidence, and its gap to the realized accuracy."""
    estimated = GaugeMetricFamily(
        MODEL_ESTIMATED_ACCURACY,
        "Accuracy the calibrated confidences predict: mean probability of the predicted class.",
        labels=["model_version", "time_window"],
    )
    gap = GaugeMetricFamily(
        MODEL_ESTIMATION_GAP,
        "Estimated minus realized accuracy on the same reviewed predictions (enough verdicts).",
        labels=["model_version", "time_window"],
    )
    outside = GaugeMetricFamily(
        MODEL_ESTIMATION_GAP_OUTSIDE,
        "1 when the estimate lies outside the realized accuracy's 95% Wilson interval.",
        labels=["model_version", "time_window"],
    )
    for estimate in estimates:
        if estimate.estimated is not None:
            estimated.add_metric([estimate.model_version, estimate.window], estimate.estimated)
    for figure in gaps:
        labels = [figure.model_version, figure.window]
        gap.add_metric(labels, figure.gap)
        outside.add_metric(labels, 1.0 if figure.outside_interval else 0.0)
    return [estimated, gap, outside]


def usage_families(
    active_users: Mapping[str, int], feedback_rate: float | None
) -> list[GaugeMetricFamily]:
    """Headline usage: distinct active users per window, and the 7-day feedback rate."""
    users = GaugeMetricFamily(
        USAGE_ACTIVE_USERS,
        "Distinct users with a prediction in the last 1d, 7d or 30d (from the database).",
        labels=["window"],
    )
    for window, count in active_users.items():
        users.add_metric([window], count)
    rate = GaugeMetricFamily(
        USAGE_FEEDBACK_RATE,
        "Share of the last 7 days' predictions that received a verdict.",
        labels=["window"],
    )
    if feedback_rate is not None:
        rate.add_metric(["7d"], feedback_rate)
    return [users, rate]


def model_families(model_name: str, model_version: str | None) -> list[GaugeMetricFamily]:
    """`model_info` for the loaded model (absent when none is) and `model_loaded` as 0 or 1."""
    info = GaugeMetricFamily(
        MODEL_INFO,
        "The model this process serves (value 1).",
        labels=["model_name", "model_version"],
    )
    if model_version is not None:
        info.add_metric([model_name, model_version], 1)
    loaded = GaugeMetricFamily(MODEL_LOADED, "1 when a model is loaded and serving, else 0.")
    loaded.add_metric([], 1 if model_version is not None else 0)
    return [info, loaded]


def spool_depth_family(depth: int) -> GaugeMetricFamily:
    """`spool_depth`: records waiting in this host's spool files for the database."""
    family = GaugeMetricFamily(
        SPOOL_DEPTH,
        "Records waiting in the local spool for the database (every process's files on the host).",
    )
    family.add_metric([], depth)
    return family


def build_info_family() -> GaugeMetricFamily:
    """`leafwatch_build_info`: versions of LeafWatch and of what it runs on (value 1)."""
    family = GaugeMetricFamily(
        BUILD_INFO,
        "LeafWatch build (value 1): its version, Python's and ONNX Runtime's.",
        labels=["version", "python_version", "onnxruntime_version"],
    )
    family.add_metric([__version__, platform.python_version(), package_version("onnxruntime")], 1)
    return family


def drift_families(report: DriftReport | None) -> list[GaugeMetricFamily]:
    """The latest drift report as gauges (empty families before the first run)."""
    score = GaugeMetricFamily(
        DATA_DRIFT_SCORE,
        "Drift of the current window against the reference, in [0, 1] (docs/drift.md); "
        "absent without enough data.",
        labels=["metric_type"],
    )
    statistic = GaugeMetricFamily(
        DATA_DRIFT_FEATURE_STATISTIC,
        "Kolmogorov-Smirnov statistic of each tested feature, current window against reference.",
        labels=["feature"],
    )
    drifted = GaugeMetricFamily(
        DATA_DRIFT_FEATURE_DRIFTED,
        "1 when the feature drifted (Benjamini-Hochberg adjusted p-value under the level), else 0.",
        labels=["feature"],
    )
    detected = GaugeMetricFamily(DATA_DRIFT_DETECTED, "1 when the latest run flagged any drift.")
    streak = GaugeMetricFamily(
        DATA_DRIFT_CONSECUTIVE_RUNS, "Runs in a row, up to the latest, that flagged drift."
    )
    retraining = GaugeMetricFamily(
        DATA_DRIFT_RETRAINING, "1 when drift has persisted long enough to recommend retraining."
    )
    samples = GaugeMetricFamily(DATA_DRIFT_SAMPLES, "Predictions in the latest run's window.")
    last_run = GaugeMetricFamily(DATA_DRIFT_LAST_RUN, "When the latest drift run ended (Unix).")
    families = [score, statistic, drifted, detected, streak, retraining, samples, last_run]
    if report is None:
        return families
    for metric_type, value in report.scores.items():
        if value is not None:
            score.add_metric([metric_type], value)
    for feature in report.details.get("features", []):
        if feature["ks_statistic"] is not None:
            statistic.add_metric([feature["name"]], feature["ks_statistic"])
            drifted.add_metric([feature["name"]], 1 if feature["drifted"] else 0)
    detected.add_metric([], 1 if report.drifted else 0)
    streak.add_metric([], report.details.get("consecutive_drifted_runs", 0))
    retraining.add_metric([], 1 if report.retraining_recommended else 0)
    samples.add_metric([], report.current_size)
    last_run.add_metric([], report.run_at.timestamp())
    return families
