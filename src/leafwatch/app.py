"""The application factory: `create_app(settings)`; nothing happens at import."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from leafwatch import __version__
from leafwatch.api import feedback, health, predict, predictions
from leafwatch.api import metrics as metrics_route
from leafwatch.api.errors import install_error_handlers
from leafwatch.config import Settings
from leafwatch.observe.exposition import instrument_registry, mark_dead, multiprocess_dir
from leafwatch.observe.metrics import Metrics
from leafwatch.observe.middleware import MetricsMiddleware
from leafwatch.runtime import open_runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the LeafWatch app; the lifespan opens the database and loads the model."""
    settings = settings or Settings()
    directory = multiprocess_dir()
    metrics = Metrics(instrument_registry(multiprocess=directory is not None))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await run_in_threadpool(open_runtime, settings, metrics)
        app.state.runtime = runtime
        try:
            yield
        finally:
            runtime.close()
            if directory is not None:
                mark_dead(os.getpid(), directory)

    app = FastAPI(
        title="LeafWatch",
        version=__version__,
        summary="Banana-leaf Black Sigatoka prediction with production monitoring built in.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in (predict.router, feedback.router, predictions.router, health.router):
        app.include_router(router)
    app.include_router(metrics_route.router)
    # Added last, so it wraps every other middleware: it sees every request and every failure.
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
