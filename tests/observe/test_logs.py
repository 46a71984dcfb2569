"""Structured logs: every line's fields, the request id, the trace link, secrets, errors, files."""

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.observe.logs import REDACTED, configure_logging
from tests.conftest import image_bytes
from tests.otlp import otlp_receiver
from tests.servers import leafwatch_serve, uvicorn_thread

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")
HEX32, HEX16 = re.compile(r"[0-9a-f]{32}"), re.compile(r"[0-9a-f]{16}")


def lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON-lines log file, parsed (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def post_leaf(client: TestClient | httpx.Client, url: str = "", **headers: str) -> httpx.Response:
    return client.post(
        f"{url}/api/v1/predict",
        files={"file": ("leaf.jpg", image_bytes(), "image/jpeg")},
        data={"user_id": "farmer-7"},
        headers=headers,
    )


def test_every_line_of_a_predict_request_carries_its_context(tmp_path: Path) -> None:
    log_file = tmp_path / "app.log"
    with otlp_receiver() as receiver:
        settings = Settings(
            var_dir=tmp_path / "var", otlp_endpoint=receiver.url, log_file=str(log_file)
        )
        with TestClient(create_app(settings)) as client:
            answer = post_leaf(client, **{"X-Request-ID": "client-req-42"})
        spans = receiver.wait_for(lambda spans: any(s.kind == 2 for s in spans))
    assert answer.headers["x-request-id"] == "client-req-42"
    request_span = next(s for s in spans if s.kind == 2)
    mine = [line for line in lines(log_file) if line.get("request_id") == "client-req-42"]
    assert {line["event"] for line in mine} >= {"prediction made", "request"}
    for line in mine:
        assert ISO_UTC.fullmatch(line["timestamp"]), line
        assert line["level"] in {"debug", "info", "warning", "error"}
        assert line["logger"]
        assert line["trace_id"] == request_span.trace_id
        assert HEX16.fullmatch(line["span_id"])
        assert line["method"] == "POST"
        assert line["route"] == "/api/v1/predict"
    access = [line for line in mine if line["event"] == "request"]
    assert len(access) == 1
    assert access[0]["status"] == 200
    assert access[0]["duration_ms"] > 0
    prediction = answer.json()
    for line in access + [line for line in mine if line["event"] == "prediction made"]:
        assert line["user_id"] == "farmer-7"
        assert line["prediction_id"] == prediction["prediction_id"]
        assert line["model_version"] == prediction["model_version"]


def test_without_an_exporter_lines_still_get_trace_and_span_ids(tmp_path: Path) -> None:
    log_file = tmp_path / "app.log"
    settings = Settings(var_dir=tmp_path / "var", log_file=str(log_file))
    with TestClient(create_app(settings)) as client:
        assert post_leaf(client).status_code == 200
    made = [line for line in lines(log_file) if line["event"] == "prediction made"]
    assert HEX32.fullmatch(made[0]["trace_id"])
    assert HEX16.fullmatch(made[0]["span_id"])


def test_a_request_id_is_made_when_missing_or_not_plain(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(var_dir=tmp_path / "var"))) as client:
        made = client.get("/health").headers["x-request-id"]
        refused = client.get("/health", headers={"X-Request-ID": "a b;" + "x" * 300})
        kept = client.get("/health", headers={"X-Request-ID": "req-1.2:3"})
    assert HEX32.fullmatch(made)
    assert HEX32.fullmatch(refused.headers["x-request-id"])
    assert kept.headers["x-request-id"] == "req-1.2:3"


SECRETS = ["s3cr3t-bearer", "s3cr3t-cookie", "s3cr3t-apikey", "s3cr3t-query", "s3cr3t-exc"]


def leaky_app(tmp_path: Path, log_file: Path) -> FastAPI:
    """LeafWatch with a route that logs everything a careless handler might."""
    app = create_app(Settings(var_dir=tmp_path / "var", log_file=str(log_file)))
    log = structlog.stdlib.get_logger("careless")

    @app.get("/careless")
    def careless(authorization: str = "", token: str = "") -> None:
        log.info(
            "what came in",
            authorization=authorization,
            headers={"Cookie": "session=s3cr3t-cookie", "X-API-Key": "s3cr3t-apikey"},
            header_list=[("authorization", "Bearer s3cr3t-bearer")],
            url=f"http://example/x?token={token}&page=2",
            note="sent with Bearer s3cr3t-bearer",
        )
        raise RuntimeError("upstream refused Bearer s3cr3t-exc")

    return app


def test_secrets_never_reach_a_log_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "app.log"
    with uvicorn_thread(leaky_app(tmp_path, log_file)) as url:
        answer = httpx.get(
            f"{url}/careless?token=s3cr3t-query",
            headers={
                "Authorization": "Bearer s3cr3t-bearer",
                "Cookie": "session=s3cr3t-cookie",
                "X-API-Key": "s3cr3t-apikey",
            },
        )
        assert answer.status_code == 500
    written = log_file.read_text() + capfd.readouterr().out
    assert "what came in" in written
    assert REDACTED in written
    for secret in SECRETS:
        assert secret not in written, secret
    assert "page=2" in written  # only the secret part of a URL goes


def test_an_error_is_logged_once_with_its_exception(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "app.log"
    app = create_app(Settings(var_dir=tmp_path / "var", log_file=str(log_file)))

    @app.get("/boom")
    def boom() -> None:
        raise ValueError("the widget exploded")

    with uvicorn_thread(app) as url:
        assert httpx.get(f"{url}/boom", headers={"X-Request-ID": "boom-1"}).status_code == 500
    logged = [line for line in lines(log_file) if "exception" in line]
    assert len(logged) == 1, logged
    assert logged[0]["request_id"] == "boom-1"
    assert logged[0]["level"] == "error"
    assert logged[0]["exception"][0]["exc_type"] == "ValueError"
    assert "Exception in ASGI application" not in log_file.read_text() + capfd.readouterr().out


def test_the_log_file_rotates_by_size_and_keeps_the_set_number(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "app.log"
    settings = Settings(
        var_dir=tmp_path / "var",
        log_file=str(log_file),
        log_file_max_bytes=2_000,
        log_file_backups=2,
    )
    with TestClient(create_app(settings)) as client:
        for _ in range(60):
            client.get("/health")
    names = sorted(path.name for path in log_file.parent.iterdir())
    assert names == ["app.log", "app.log.1", "app.log.2"]
    for path in log_file.parent.iterdir():
        assert path.stat().st_size <= 2_000
        lines(path)  # whole JSON lines, none cut by rotation


def test_console_format_is_readable_and_json_is_the_default_off_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(var_dir=tmp_path, log_file="", log_format="console"))
    structlog.stdlib.get_logger("demo").info("hello there", answer=42)
    console = capsys.readouterr().out
    assert "hello there" in console
    assert "answer" in console
    with pytest.raises(json.JSONDecodeError):
        json.loads(console.splitlines()[-1])
    configure_logging(
        Settings(var_dir=tmp_path, log_file="")
    )  # auto, and pytest's stdout is no tty
    structlog.stdlib.get_logger("demo").info("hello again")
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["event"] == "hello again"


@pytest.mark.slow
def test_leafwatch_serve_writes_its_own_access_line_not_uvicorns(tmp_path: Path) -> None:
    with leafwatch_serve(tmp_path) as (url, _process):
        httpx.get(f"{url}/health", headers={"X-Request-ID": "probe-9"})
        port = url.rsplit(":", 1)[1]
    stdout = (tmp_path / f"serve-{port}.log").read_text()
    assert '"GET /health HTTP/1.1" 200' not in stdout  # uvicorn's access format
    access = [
        json.loads(line)
        for line in stdout.splitlines()
        if line.startswith("{") and '"probe-9"' in line
    ]
    assert [(line["event"], line["status"], line["route"]) for line in access] == [
        ("request", 200, "/health")
    ]
    for line in stdout.splitlines():
        json.loads(line)  # uvicorn's own lines are JSON too
    assert lines(tmp_path / "logs" / "app.log")
