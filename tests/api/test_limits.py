"""The request limits: body size counted as it arrives (413), time to answer (408, 503)."""

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from leafwatch.api.errors import install_error_handlers
from leafwatch.api.limits import LimitsMiddleware
from leafwatch.app import create_app
from leafwatch.config import FORM_FIELDS_BYTES, Settings
from tests.conftest import image_bytes
from tests.scrape import total
from tests.servers import uvicorn_thread

LIMIT = 1000


class Seen:
    """What the test app's routes got to do."""

    def __init__(self) -> None:
        self.bodies: list[int] = []
        self.finished = threading.Event()


def limited_app(seen: Seen, *, max_body_bytes: int = LIMIT, timeout_s: float = 0) -> FastAPI:
    """A small app behind the limits: it echoes body sizes, sleeps in a thread, or streams."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        size = len(await request.body())
        seen.bodies.append(size)
        return {"size": size}

    @app.get("/slow")
    def slow(seconds: float) -> dict[str, bool]:
        time.sleep(seconds)  # a thread the time limit cannot stop
        seen.finished.set()
        return {"done": True}

    @app.get("/stream")
    def stream(seconds: float) -> StreamingResponse:
        def parts() -> Iterator[bytes]:
            yield b"started;"
            time.sleep(seconds)
            yield b"finished"

        return StreamingResponse(parts(), media_type="text/plain")

    app.add_middleware(LimitsMiddleware, max_body_bytes=max_body_bytes, timeout_s=timeout_s)
    return app


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["detail"]


def test_a_body_up_to_the_limit_passes_and_one_byte_more_is_refused() -> None:
    seen = Seen()
    with TestClient(limited_app(seen)) as client:
        assert client.post("/echo", content=b"x" * LIMIT).json() == {"size": LIMIT}
        refused = client.post("/echo", content=b"x" * (LIMIT + 1))
    assert_error(refused, 413, "request_too_large")
    assert refused.headers["connection"] == "close"
    assert str(LIMIT) in refused.json()["detail"]
    assert seen.bodies == [LIMIT]  # the route never saw the refused body


def test_a_chunked_body_is_counted_as_it_streams_and_cut_off_at_the_limit() -> None:
    seen = Seen()
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(1000):  # 64 MiB
            sent += 65536
            yield b"x" * 65536

    with uvicorn_thread(limited_app(seen)) as url:
        refused = httpx.post(f"{url}/echo", content=chunks(), timeout=10)
        assert httpx.post(f"{url}/echo", content=iter([b"x" * 500])).json() == {"size": 500}
    assert_error(refused, 413, "request_too_large")
    assert "passed" in refused.json()["detail"]  # counted, not declared
    assert sent < 16 * 2**20  # answered long before the client had sent it all
    assert seen.bodies == [500]


def test_a_slow_answer_gets_503_in_time_and_its_thread_still_finishes() -> None:
    seen = Seen()
    # A real server: the test client would wait for the app to return, not for its answer.
    with uvicorn_thread(limited_app(seen, timeout_s=0.3)) as url:
        started = time.monotonic()
        answer = httpx.get(f"{url}/slow", params={"seconds": 1.5})
        elapsed = time.monotonic() - started
        assert_error(answer, 503, "request_timeout")
        assert 0.3 <= elapsed < 1.2
        assert not seen.finished.is_set()
        assert seen.finished.wait(5)  # the work goes on: a thread cannot be stopped
        assert httpx.get(f"{url}/slow", params={"seconds": 0}).json() == {"done": True}


def test_an_answer_that_has_started_is_not_cut_off_by_the_time_limit() -> None:
    with TestClient(limited_app(Seen(), timeout_s=0.2)) as client:
        answer = client.get("/stream", params={"seconds": 0.5})
    assert answer.status_code == 200
    assert answer.text == "started;finished"


def test_without_a_time_limit_a_slow_answer_is_waited_for() -> None:
    with TestClient(limited_app(Seen(), timeout_s=0)) as client:
        assert client.get("/slow", params={"seconds": 0.5}).json() == {"done": True}


def test_a_body_that_trickles_in_gets_408_and_the_connection_closed() -> None:
    seen = Seen()
    with uvicorn_thread(limited_app(seen, timeout_s=0.5)) as url:
        port = int(url.rsplit(":", 1)[1])
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(
                b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nonly ten b"
            )
            answer = b""
            while chunk := connection.recv(65536):  # ends when the server closes
                answer += chunk
        elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in head.lower()
    assert b'"error":"body_timeout"' in body
    assert 0.5 <= elapsed < 3
    assert seen.bodies == []


@pytest.fixture
def small_settings(tmp_path: Path) -> Settings:
    return Settings(
        var_dir=tmp_path / "var",
        migrate_on_start=True,
        max_upload_bytes=50_000,
        request_timeout_seconds=0.5,
        faults_enabled=True,
        admin_token="admin-s3cret",
    )


def test_the_service_refuses_a_body_over_its_limit_and_counts_a_refused_upload(
    small_settings: Settings,
) -> None:
    limit = small_settings.resolved_max_request_bytes()
    assert limit == 50_000 + FORM_FIELDS_BYTES
    over = image_bytes("PNG", (16, 16)) + b"\0" * limit
    with TestClient(create_app(small_settings)) as client:
        upload = client.post(
            "/api/v1/predict",
            files={"file": ("leaf.png", over, "image/png")},
            data={"user_id": "farmer-1"},
        )
        # An upload form over the limit is a file too large, as the route would have said.
        assert_error(upload, 413, "file_too_large")
        feedback = client.post(
            "/api/v1/feedback/submit",
            content=b'{"comment": "' + b"x" * limit + b'"}',
            headers={"content-type": "application/json"},
        )
        assert_error(feedback, 413, "request_too_large")
        text = client.get("/metrics").text
    assert total(text, "api_requests_total", endpoint="/api/v1/predict", status="413") == 1
    assert total(text, "api_requests_total", endpoint="/api/v1/feedback/submit", status="413") == 1
    assert total(text, "api_rejected_uploads_total", reason="file_too_large") == 1


def test_the_service_answers_503_when_a_route_is_slower_than_its_time_limit(
    small_settings: Settings,
) -> None:
    admin = {"Authorization": "Bearer admin-s3cret"}
    with uvicorn_thread(create_app(small_settings)) as url, httpx.Client(base_url=url) as client:
        fault = {"route": "/health", "latency_ms": 1500}
        assert client.post("/api/v1/admin/faults", json=fault, headers=admin).status_code == 200
        started = time.monotonic()
        answer = client.get("/health")
        assert time.monotonic() - started < 1.2
        assert_error(answer, 503, "request_timeout")
        assert client.get("/ready").status_code == 200
        text = client.get("/metrics").text
    assert total(text, "api_requests_total", endpoint="/health", status="503") == 1
