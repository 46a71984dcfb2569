"""The metrics middleware: route templates, bounded labels, failures, early exits, exemplars."""

import asyncio
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from starlette.background import BackgroundTask
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.observe.metrics import Metrics
from leafwatch.observe.middleware import ObserveMiddleware, no_exemplar, trace_exemplar
from tests.conftest import image_bytes
from tests.scrape import series, total
from tests.servers import leafwatch_serve


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    """LeafWatch on SQLite: labels do not depend on the database."""
    return create_app(Settings(var_dir=tmp_path / "var"))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def scrape(client: TestClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


def test_endpoint_is_the_route_template_and_unmatched_paths_share_one(client: TestClient) -> None:
    client.get(f"/api/v1/predictions/{uuid.uuid4()}")
    client.get("/no/such/path")
    client.request("BREW", "/health")
    text = scrape(client)
    template = "/api/v1/predictions/{prediction_id}"
    assert total(text, "api_requests_total", endpoint=template, method="GET", status="404") == 1
    assert total(text, "api_requests_total", endpoint="unmatched", status="404") == 1
    assert total(text, "api_requests_total", endpoint="/health", method="OTHER", status="405") == 1


def test_series_do_not_grow_with_ids_paths_or_methods(client: TestClient) -> None:
    def traffic(count: int) -> None:
        for _ in range(count):
            client.get(f"/api/v1/predictions/{uuid.uuid4()}")
            client.get(f"/{uuid.uuid4().hex}/{uuid.uuid4().hex[:6]}")
            client.request(f"X{uuid.uuid4().hex[:8].upper()}", "/health")

    traffic(1)  # each kind of request, the scrape included, creates its series once
    scrape(client)
    before = series(scrape(client))
    traffic(1000)
    after = series(scrape(client))
    added = {name for name, _labels in after - before}
    assert added == set(), f"new series: {added}"
    assert len(after) == len(before)


def test_an_exception_counts_as_500_and_active_requests_return_to_zero(
    app: FastAPI, client: TestClient
) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    assert client.get("/boom").status_code == 500
    text = scrape(client)
    assert total(text, "api_requests_total", endpoint="/boom", status="500") == 1
    assert total(text, "api_active_requests") == 1  # the scrape itself
    assert total(text, "api_error_rate", endpoint="/boom") == 1.0


def test_background_tasks_are_not_request_latency(app: FastAPI, client: TestClient) -> None:
    @app.get("/later")
    def later() -> PlainTextResponse:
        return PlainTextResponse("ok", background=BackgroundTask(time.sleep, 0.5))

    assert client.get("/later").text == "ok"
    text = scrape(client)
    assert total(text, "api_request_latency_seconds_count", endpoint="/later") == 1
    assert total(text, "api_request_latency_seconds_sum", endpoint="/later") < 0.25


def instrumented(inner: ASGIApp) -> tuple[ObserveMiddleware, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return ObserveMiddleware(inner, metrics=metrics), metrics


def run_exchange(app: ASGIApp, messages: list[Message], method: str = "GET") -> list[Message]:
    """Drive an ASGI app as a server would, with the client's messages given in order."""
    sent: list[Message] = []
    incoming = list(messages)

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)  # a client that stays connected and quiet
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": method,
        "path": "/slow",
        "headers": [],
        "query_string": b"",
    }
    asyncio.run(app(scope, receive, send))
    return sent


async def slow_answer(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.sleep(0.2)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})


def test_a_client_leaving_during_a_slow_get_counts_as_499() -> None:
    app, metrics = instrumented(slow_answer)
    body: Message = {"type": "http.request", "body": b"", "more_body": False}
    run_exchange(app, [body, {"type": "http.disconnect"}])
    text = generate_latest(metrics.registry).decode()
    assert total(text, "api_requests_total", status="499") == 1
    assert total(text, "api_active_requests") == 0


def test_a_client_that_stays_gets_its_status_counted() -> None:
    app, metrics = instrumented(slow_answer)
    sent = run_exchange(app, [{"type": "http.request", "body": b"", "more_body": False}])
    assert sent[-1]["body"] == b"late"
    text = generate_latest(metrics.registry).decode()
    assert total(text, "api_requests_total", status="200") == 1


def big_jpeg() -> bytes:
    return image_bytes("JPEG", size=(4000, 3000), quality=95)


def raw_upload(url: str, body: bytes, *, declared: int | None = None) -> None:
    """Send a multipart predict request over a socket, then hang up without reading the answer."""
    host, port = url.removeprefix("http://").split(":")
    boundary = "leafwatchboundary"
    payload = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="user_id"\r\n\r\nfarmer-1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + body
    if declared is None:
        payload += f"\r\n--{boundary}--\r\n".encode()
    head = (
        f"POST /api/v1/predict HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {declared or len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + payload)


def wait_for(url: str, expected: float, name: str, **labels: str) -> float:
    """The metric's value once it reaches `expected`, or after 30 s, whatever it is then."""
    deadline = time.monotonic() + 30
    while True:
        value = total(httpx.get(f"{url}/metrics").text, name, **labels)
        if value >= expected or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.mark.slow
def test_real_clients_hanging_up_count_as_499(tmp_path: Path) -> None:
    with leafwatch_serve(tmp_path) as (url, _process):
        raw_upload(url, big_jpeg())  # gone while the image is decoded
        raw_upload(url, b"\xff\xd8" + b"\0" * 1000, declared=5_000_000)  # gone mid-upload
        predict = {"endpoint": "/api/v1/predict"}
        assert wait_for(url, 2, "api_requests_total", status="499", **predict) == 2
        text = httpx.get(f"{url}/metrics").text
        assert total(text, "api_requests_total", endpoint="/api/v1/predict") == 2
        assert total(text, "api_active_requests") == 1  # the scrape itself


def traced(inner: ASGIApp, provider: TracerProvider) -> ASGIApp:
    """Stands for the tracing middleware outside this one: a span around the whole exchange."""
    tracer = provider.get_tracer("test")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        with tracer.start_as_current_span("request"):
            await inner(scope, receive, send)

    return app


def exposition_of(metrics: Metrics) -> str:
    return openmetrics_latest(metrics.registry).decode()


def test_a_sampled_trace_id_becomes_the_latency_exemplar() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = Metrics(CollectorRegistry())
    app = traced(ObserveMiddleware(slow_answer, metrics=metrics, exemplar=trace_exemplar), provider)
    run_exchange(app, [{"type": "http.request", "body": b"", "more_body": False}])
    trace_id = format(exporter.get_finished_spans()[0].context.trace_id, "032x")
    text = exposition_of(metrics)
    exemplars = re.findall(r'# \{trace_id="([0-9a-f]{32})"\}', text)
    assert exemplars == [trace_id]


def test_unsampled_traces_and_disabled_exemplars_give_none() -> None:
    for provider, source in [
        (TracerProvider(sampler=ALWAYS_OFF), trace_exemplar),
        (TracerProvider(), no_exemplar),
    ]:
        metrics = Metrics(CollectorRegistry())
        app = traced(ObserveMiddleware(slow_answer, metrics=metrics, exemplar=source), provider)
        run_exchange(app, [{"type": "http.request", "body": b"", "more_body": False}])
        assert "trace_id" not in exposition_of(metrics)
