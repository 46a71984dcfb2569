"""OpenTelemetry traces: the request, the database and LeafWatch's own steps, exported over OTLP."""

import os

from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from sqlalchemy import Engine

from leafwatch import __version__
from leafwatch.config import Settings

# Scrapes and probes arrive every few seconds and say nothing about users' requests.
UNTRACED_PATHS = ("/metrics", "/health", "/ready")
_SQLALCHEMY_SCOPE = "opentelemetry.instrumentation.sqlalchemy"


def make_tracer_provider(settings: Settings) -> TracerProvider:
    """A provider of this process's own (not the global one), sampling by trace id ratio.

    Without an exporter it still gives every request a trace id and span ids, for the logs.
    """
    resource = Resource.create(
        {"service.name": "leafwatch", "service.version": __version__, "process.pid": os.getpid()}
    )
    sampler = ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))
    return TracerProvider(resource=resource, sampler=sampler)


def start_export(provider: TracerProvider, settings: Settings) -> None:
    """Send finished spans to the OTLP/HTTP endpoint, in batches, from a background thread."""
    if settings.otlp_endpoint:
        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, timeout=5)
        provider.add_span_processor(BatchSpanProcessor(exporter))


def instrument_app(app: FastAPI, provider: TracerProvider) -> None:
    """A span per request, without a span per ASGI message."""
    excluded = ",".join(rf"^https?://[^/]+{path}(\?.*)?$" for path in UNTRACED_PATHS)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        meter_provider=NoOpMeterProvider(),  # request metrics are LeafWatch's own
        excluded_urls=excluded,
        exclude_spans=["receive", "send"],
    )


def instrument_engine(engine: Engine, provider: TracerProvider) -> None:
    """A span per SQL statement on this engine (and not on every engine of the process)."""
    tracer = provider.get_tracer(_SQLALCHEMY_SCOPE)
    meter = NoOpMeterProvider().get_meter(_SQLALCHEMY_SCOPE)
    usage = meter.create_up_down_counter("db.client.connections")
    EngineTracer(tracer, engine, usage)  # type: ignore[no-untyped-call]
