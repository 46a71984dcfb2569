"""What a running LeafWatch process holds: database, image store, registry and the loaded model."""

import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from leafwatch.config import Settings
from leafwatch.errors import DriftUnavailable, ModelNotReady
from leafwatch.model.classifier import OnnxClassifier
from leafwatch.model.preprocess import configure_image_memory
from leafwatch.model.registry import ModelRegistry, ModelVersionInfo, open_registry
from leafwatch.monitor import estimation
from leafwatch.monitor.drift import latest_report
from leafwatch.observe import metrics as names
from leafwatch.observe.exposition import (
    Exposition,
    FunctionCollector,
    PeriodCache,
    multiprocess_dir,
)
from leafwatch.observe.metrics import Metrics
from leafwatch.observe.tracing import instrument_engine
from leafwatch.service import drift, quality
from leafwatch.service.faults import FaultSwitch
from leafwatch.service.predict import Predictor
from leafwatch.service.recorder import Recorder
from leafwatch.storage import db, queries, rollups, usage
from leafwatch.storage.images import ImageStore, open_image_store
from leafwatch.storage.spool import Spool
from leafwatch.storage.tables import DriftReport

log = structlog.stdlib.get_logger(__name__)

# Days of model_performance rows recomputed each time: verdicts keep arriving for a while.
PERFORMANCE_DAYS = 7
USAGE_PERIOD_S = 300.0
# How long after a drift run ends its report may take to be committed, at most (a bound, not a
# wait: the figures show it from the first cache period that starts this long after it ended).
DRIFT_COMMIT_S = 1.0


@dataclass
class Runtime:
    """The process's live parts, built by `open_runtime` and closed by `close`."""

    settings: Settings
    metrics: Metrics
    tracer: Tracer
    exposition: Exposition
    engine: Engine
    sessions: sessionmaker[Session]
    images: ImageStore
    registry: ModelRegistry
    recorder: Recorder
    io: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="leafwatch-io")
    )
    classifier: OnnxClassifier | None = None
    model: ModelVersionInfo | None = None
    model_error: str | None = field(default=None)
    faults: FaultSwitch | None = None
    # One model load at a time: the poll and an admin call may both find a new version.
    loading: threading.Lock = field(default_factory=threading.Lock)

    def predictor(self) -> Predictor:
        """The predictor over the loaded model; raises ModelNotReady when none is loaded."""
        if self.classifier is None:
            raise ModelNotReady(f"the model is not loaded: {self.model_error or 'unknown reason'}")
        return Predictor(
            classifier=self.classifier,
            images=self.images,
            recorder=self.recorder,
            io=self.io,
            tracer=self.tracer,
            max_bytes=self.settings.max_upload_bytes,
            max_pixels=self.settings.max_image_pixels,
        )

    def reload_model(self) -> str | None:
        """Serve the production version if it has changed; returns the new version, or None.

        The new version is loaded while the old one serves; requests already answering keep the
        classifier they started with, so they finish on the old version.
        """
        with self.loading:
            info = self.registry.production()
            if self.classifier is not None and self.classifier.version == info.version:
                return None
            previous = self.classifier.version if self.classifier is not None else None
            serve_version(self, info)
        log.info("model version changed", model_version=info.version, previous=previous)
        return info.version

    def run_drift(self) -> DriftReport:
        """Run drift detection for the served version now; raises DriftUnavailable."""
        if self.model is None:
            raise DriftUnavailable(f"no model is loaded: {self.model_error or 'unknown reason'}")
        with self.sessions() as session:
            report = drift.run_for_model(session, settings=self.settings, model=self.model)
            session.expunge(report)
            return report

    def scheduled_drift(self) -> None:
        """The scheduler's drift run: a missing reference is a warning, not a failure."""
        try:
            self.run_drift()
        except DriftUnavailable as exc:
            log.warning("drift run skipped", reason=exc.detail)

    def record_performance(self) -> None:
        """Recompute the daily model_performance rows of the last week (verdicts arrive late)."""
        today = datetime.now(UTC).date()
        with self.sessions() as session:
            for back in range(PERFORMANCE_DAYS):
                quality.record_daily_performance(session, day=today - timedelta(days=back))

    def prune_images(self) -> int:
        """Delete the images past the retention period, count them; returns how many."""
        days = self.settings.image_retention_days
        deleted = self.images.prune(stored_before=datetime.now(UTC) - timedelta(days=days))
        self.metrics.images_deleted.inc(deleted)
        log.info("images past their retention deleted", deleted=deleted, retention_days=days)
        return deleted

    def roll_up(self) -> None:
        """Roll up the past days that are new or have changed (late predictions or verdicts)."""
        run = rollups.roll_up(self.sessions)
        log.info("rollups updated", days=len(run.days), seconds=round(run.seconds, 3))

    def close(self) -> None:
        """Finish pending image writes, let the spool file go, release the database connections."""
        self.io.shutdown(wait=True)
        self.recorder.close()
        self.engine.dispose()


def open_runtime(settings: Settings, metrics: Metrics, tracer_provider: TracerProvider) -> Runtime:
    """Connect the database (migrating if configured), open the store and load the model."""
    configure_image_memory()
    images = open_image_store(settings)  # first: an unusable bucket stops the start, says why
    engine = db.make_engine(
        settings.resolved_database_url(),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    instrument_engine(engine, tracer_provider)
    if settings.should_migrate_on_start():
        db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    spool = Spool(settings.resolved_spool_dir()) if settings.spool_enabled else None
    runtime = Runtime(
        settings=settings,
        metrics=metrics,
        tracer=tracer_provider.get_tracer("leafwatch"),
        exposition=Exposition(
            metrics,
            directory=multiprocess_dir(),
            error_rate_window_s=settings.error_rate_window_seconds,
        ),
        engine=engine,
        sessions=sessions,
        images=images,
        registry=open_registry(settings),
        recorder=Recorder(sessions, spool, metrics, retry_s=settings.spool_retry_seconds),
    )
    if settings.faults_enabled:
        runtime.faults = FaultSwitch(runtime.sessions, metrics)
    runtime.exposition.extra.extend(scrape_figures(runtime))
    load_model(runtime)
    return runtime


@dataclass(frozen=True)
class AccuracyFigures:
    """Accuracy from feedback (overall and per predicted class) and from the confidences."""

    realized: list[queries.VersionAccuracy]
    by_class: list[queries.VersionAccuracy]
    estimated: list[estimation.EstimatedAccuracy]


def scrape_figures(runtime: Runtime) -> list[Collector]:
    """Figures /metrics computes when scraped: the model, accuracy from feedback, the drift."""

    def model() -> Sequence[Metric]:
        classifier = runtime.classifier
        if classifier is None:
            return names.model_families(runtime.settings.model_name, None)
        return names.model_families(classifier.name, classifier.version)

    def compute_accuracy(as_of: float) -> AccuracyFigures:
        moment = datetime.fromtimestamp(as_of, UTC)
        windows = names.ACCURACY_WINDOWS
        with runtime.sessions() as session:
            realized = queries.accuracy_by_version(session, as_of=moment, windows=windows)
            by_class = queries.accuracy_by_version(
                session, as_of=moment, windows=windows, by_class=True
            )
            estimated = estimation.estimated_accuracy(session, as_of=moment, windows=windows)
        return AccuracyFigures(realized, by_class, estimated)

    period = runtime.settings.metrics_cache_seconds
    cache = PeriodCache(compute_accuracy, period_s=period)

    def latest_drift(as_of: float) -> DriftReport | None:
        # With a cache, every process shows the report that had ended a moment before the
        # period began, whenever in the period it reads: replicas agree right after a run too.
        # The moment leaves time for that report's commit to land.
        finished_by = datetime.fromtimestamp(as_of - DRIFT_COMMIT_S, UTC) if period > 0 else None
        with runtime.sessions() as session:
            report = latest_report(session, finished_by=finished_by)
            if report is not None:
                session.expunge(report)
            return report

    drift_cache: PeriodCache[DriftReport | None] = PeriodCache(latest_drift, period_s=period)

    def accuracy() -> Sequence[Metric]:
        try:
            figures = cache.figures()
            gaps = estimation.estimation_gaps(figures.estimated, figures.realized)
            return [
                *names.accuracy_families(figures.realized, figures.by_class),
                *names.estimation_families(figures.estimated, gaps),
            ]
        except SQLAlchemyError:  # a scrape still answers; readiness reports the database
            log.warning("accuracy figures skipped: the database could not be read", exc_info=True)
            return []

    def drift_figures() -> Sequence[Metric]:
        try:
            return names.drift_families(drift_cache.figures())
        except SQLAlchemyError:
            log.warning("drift figures skipped: the database could not be read", exc_info=True)
            return []

    def compute_usage(as_of: float) -> tuple[dict[str, int], float | None]:
        moment = datetime.fromtimestamp(as_of, UTC)
        with runtime.sessions() as session:
            users = usage.active_users(session, as_of=moment)
            rate = usage.feedback_rate(session, since=moment - timedelta(days=7), until=moment)
        return users, rate

    # Scanning a month of predictions is worth doing every few minutes, not on every scrape.
    usage_period = max(period, USAGE_PERIOD_S) if period > 0 else 0.0
    usage_cache = PeriodCache(compute_usage, period_s=usage_period)

    def usage_figures() -> Sequence[Metric]:
        try:
            return names.usage_families(*usage_cache.figures())
        except SQLAlchemyError:
            log.warning("usage figures skipped: the database could not be read", exc_info=True)
            return []

    def spool_figures() -> Sequence[Metric]:
        try:
            return [names.spool_depth_family(runtime.recorder.spool_depth())]
        except (OSError, sqlite3.Error):
            log.warning("spool depth skipped: the spool could not be read", exc_info=True)
            return []

    return [
        FunctionCollector(model),
        FunctionCollector(accuracy),
        FunctionCollector(drift_figures),
        FunctionCollector(usage_figures),
        FunctionCollector(spool_figures),
    ]


def load_model(runtime: Runtime) -> None:
    """Load the production model; on failure keep serving, not ready, and say why."""
    try:
        runtime.registry.ensure_seeded()
        serve_version(runtime, runtime.registry.production())
    except Exception as exc:  # a broken model file must not take the whole service down
        runtime.classifier = None
        runtime.model = None
        runtime.model_error = f"{type(exc).__name__}: {exc}"
        log.exception("model could not be loaded", model_name=runtime.settings.model_name)


def serve_version(runtime: Runtime, info: ModelVersionInfo) -> None:
    """Load a version and make it the one new requests use."""
    classifier = OnnxClassifier(
        info.model_path, info.card, version=info.version, threads=runtime.settings.inference_threads
    )
    runtime.metrics.prepare_model(info.version)
    runtime.classifier, runtime.model, runtime.model_error = classifier, info, None
    try:
        with runtime.sessions() as session:
            queries.record_model_version(
                session,
                model_name=info.name,
                version=info.version,
                onnx_sha256=classifier.sha256,
                card=info.card,
            )
    except Exception:  # the model serves without the database; readiness reports the database
        log.exception("could not record the served model version", model_version=info.version)
