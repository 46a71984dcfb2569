"""The application factory: `create_app(settings)`; nothing happens at import."""

import asyncio
import contextlib
import functools
import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from leafwatch import __version__
from leafwatch.api import (
    alerts,
    analytics,
    dashboard,
    drift,
    faults,
    feedback,
    health,
    predict,
    predictions,
)
from leafwatch.api import metrics as metrics_route
from leafwatch.api import usage as usage_routes
from leafwatch.api.deps import bearer_matches
from leafwatch.api.errors import install_error_handlers
from leafwatch.api.limits import LimitsMiddleware
from leafwatch.api.security import Access
from leafwatch.config import Settings
from leafwatch.monitor.scheduler import every
from leafwatch.observe.exposition import instrument_registry, mark_dead, multiprocess_dir
from leafwatch.observe.logs import configure_logging
from leafwatch.observe.metrics import Metrics
from leafwatch.observe.metrics_server import MetricsServer, hold
from leafwatch.observe.middleware import ObserveMiddleware, no_exemplar, trace_exemplar
from leafwatch.observe.tracing import instrument_app, make_tracer_provider, start_export
from leafwatch.runtime import Runtime, open_runtime
from leafwatch.service.replay import replay_forever

log = structlog.stdlib.get_logger(__name__)
# Retention is counted in days: an hourly sweep keeps images at most an hour past theirs.
IMAGE_RETENTION_INTERVAL = timedelta(hours=1)


async def poll_model(runtime: Runtime, seconds: float) -> None:
    """Look for a new production version every `seconds`, and serve it when there is one."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await run_in_threadpool(runtime.reload_model)
        except Exception:  # the registry may be away for a while: keep serving what is loaded
            log.warning("the production model version could not be checked", exc_info=True)


def _metrics_authorized(settings: Settings, authorization: str | None) -> bool:
    token = settings.resolved_metrics_token()
    return token is None or bearer_matches(authorization, token)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the LeafWatch app; the lifespan opens the database, the model and the exporter."""
    settings = settings or Settings()
    configure_logging(settings)
    directory = multiprocess_dir()
    multiprocess = directory is not None
    metrics = Metrics(instrument_registry(multiprocess=multiprocess), multiprocess=multiprocess)
    # Each worker process builds its own app, so each has its own provider and export thread.
    tracer_provider = make_tracer_provider(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        start_export(tracer_provider, settings)
        runtime = await run_in_threadpool(open_runtime, settings, metrics, tracer_provider)
        app.state.runtime = runtime
        app.state.access = Access(settings, runtime.sessions, metrics)
        # What start-up built (the model, the libraries) lives as long as the process: keeping it
        # out of the collector's reach makes its full collections short pauses, not 100 ms ones.
        gc.freeze()
        gc.callbacks.append(metrics.count_gc)
        # Periodic jobs, each run once per period across every process and replica (`every`).
        jobs = {
            "drift": (settings.drift_interval_seconds, runtime.scheduled_drift),
            "model_performance": (
                settings.performance_interval_seconds,
                runtime.record_performance,
            ),
            "rollups": (settings.rollup_interval_seconds, runtime.roll_up),
            "image_retention": (
                IMAGE_RETENTION_INTERVAL.total_seconds()
                if settings.image_retention_days > 0
                else 0,
                runtime.prune_images,
            ),
        }
        tasks: list[asyncio.Task[None]] = []
        for job, (seconds, work) in jobs.items():
            if seconds > 0:
                metrics.prepare_scheduled_task(job)
                schedule = every(
                    timedelta(seconds=seconds),
                    job=job,
                    sessions=runtime.sessions,
                    work=work,
                    ended=functools.partial(metrics.record_scheduled_run, job),
                )
                tasks.append(asyncio.create_task(schedule))
        if runtime.recorder.spool is not None:
            # At start too: what a previous process left in the spool goes to the database.
            replay = replay_forever(runtime.recorder, settings.spool_retry_seconds)
            tasks.append(asyncio.create_task(replay))
        if settings.model_poll_seconds > 0:
            tasks.append(asyncio.create_task(poll_model(runtime, settings.model_poll_seconds)))
        if settings.metrics_port is not None:
            port = MetricsServer(
                runtime.exposition,
                host=settings.metrics_host or settings.host,
                port=settings.metrics_port,
                authorized=lambda header: _metrics_authorized(settings, header),
            )
            port.try_bind()  # taken by another worker: it waits; unusable: the start fails
            tasks.append(asyncio.create_task(hold(port)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            runtime.close()
            gc.callbacks.remove(metrics.count_gc)
            gc.unfreeze()  # what start-up built is collectable again once the app stops
            tracer_provider.shutdown()  # sends the spans still queued
            if directory is not None:
                mark_dead(os.getpid(), directory)

    app = FastAPI(
        title="LeafWatch",
        version=__version__,
        summary="Banana-leaf Black Sigatoka prediction with production monitoring built in.",
        lifespan=lifespan,
        # The fault switch touches every route, so it costs nothing unless switched on.
        dependencies=[Depends(faults.inject_faults)] if settings.faults_enabled else None,
        # The one upload form has a file and two short fields; the parser's defaults (1000 files,
        # 1000 fields) would let a body of tiny parts cost far more than its size.
        form_limits={"max_files": 1, "max_fields": 8, "max_part_size": 4096},
    )
    install_error_handlers(app)
    for router in (
        predict.router,
        feedback.router,
        predictions.router,
        drift.router,
        analytics.router,
        usage_routes.router,
        dashboard.router,
        health.router,
        alerts.router,
    ):
        app.include_router(router)
    if settings.metrics_port is None:  # else only the metrics port serves it
        app.include_router(metrics_route.router)
    if settings.faults_enabled:
        app.include_router(faults.router)
    app.add_middleware(
        LimitsMiddleware,
        max_body_bytes=settings.resolved_max_request_bytes(),
        timeout_s=settings.request_timeout_seconds,
        metrics=metrics,
    )
    # Added last, so it wraps every other middleware: it sees every request and every failure.
    app.add_middleware(
        ObserveMiddleware,
        metrics=metrics,
        log_requests=settings.access_log,
        # An exemplar is worth having only if its trace can be found: when spans are exported.
        exemplar=trace_exemplar if settings.otlp_endpoint else no_exemplar,
    )
    # The request's span wraps everything above, so the access line and exemplar belong to it.
    instrument_app(app, tracer_provider)
    return app
