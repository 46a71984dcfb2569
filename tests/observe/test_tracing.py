"""Traces reach a real OTLP/HTTP receiver: the request, LeafWatch's steps and the SQL, linked."""

import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from leafwatch.app import create_app
from leafwatch.config import Settings
from tests.conftest import image_bytes
from tests.otlp import ReceivedSpan, otlp_receiver
from tests.servers import leafwatch_serve

STEPS = {"decode", "preprocess", "inference", "image_store.stage", "image_store.commit"}
SERVER = 2  # SpanKind.SERVER in the OTLP protobuf


def post_leaf(client: TestClient | httpx.Client, url: str = "") -> httpx.Response:
    return client.post(
        f"{url}/api/v1/predict",
        files={"file": ("leaf.jpg", image_bytes(), "image/jpeg")},
        data={"user_id": "farmer-7"},
    )


def request_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.kind == SERVER]


def test_a_prediction_is_one_trace_with_its_steps_and_sql(tmp_path: Path) -> None:
    with otlp_receiver() as receiver:
        settings = Settings(var_dir=tmp_path / "var", otlp_endpoint=receiver.url)
        with TestClient(create_app(settings)) as client:
            answer = post_leaf(client)
            assert answer.status_code == 200
            for path in ("/metrics", "/health", "/ready"):
                client.get(path)
            metrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        # Leaving the client ran the lifespan's end, which flushes the queued spans.
        spans = receiver.wait_for(lambda spans: any(s.name == "database.write" for s in spans))
    requests = request_spans(spans)
    assert [s.name for s in requests] == ["POST /api/v1/predict"], "probes are not traced"
    root = requests[0]
    assert root.attributes["http.route"] == "/api/v1/predict"
    assert (
        root.attributes.get("http.status_code", root.attributes.get("http.response.status_code"))
        == 200
    )
    assert root.resource["service.name"] == "leafwatch"
    trace = [s for s in spans if s.trace_id == root.trace_id]
    by_name = {s.name: s for s in trace}
    assert STEPS | {"database.write"} <= set(by_name)
    for step in STEPS | {"database.write"}:
        assert by_name[step].parent_span_id == root.span_id, step
    assert by_name["inference"].attributes["model.version"] == "1"
    assert (
        by_name["inference"].attributes["model.predicted_class"]
        == answer.json()["predicted_class_name"]
    )
    sql = [
        s
        for s in trace
        if s.attributes.get("db.system") == "sqlite" or "db.statement" in s.attributes
    ]
    assert any(s.parent_span_id == by_name["database.write"].span_id for s in sql), (
        "INSERT under the write"
    )
    assert not [s for s in trace if s.name.endswith((" http receive", " http send"))]
    latency = r'api_request_latency_seconds_bucket\{endpoint="/api/v1/predict"'
    exemplar = re.search(latency + r'.*# \{trace_id="([0-9a-f]{32})"\}', metrics.text)
    assert exemplar is not None
    assert exemplar[1] == root.trace_id


def test_a_zero_sample_ratio_exports_nothing_but_logs_keep_trace_ids(tmp_path: Path) -> None:
    log_file = tmp_path / "zero.log"
    with otlp_receiver() as receiver:
        settings = Settings(
            var_dir=tmp_path / "var",
            otlp_endpoint=receiver.url,
            trace_sample_ratio=0.0,
            log_file=str(log_file),
        )
        with TestClient(create_app(settings)) as client:
            assert post_leaf(client).status_code == 200
        assert receiver.spans == []
    assert re.search(r'"trace_id": "[0-9a-f]{32}"', log_file.read_text())


@pytest.mark.slow
def test_each_worker_sets_up_its_own_tracing(tmp_path: Path) -> None:
    with otlp_receiver() as receiver:
        env = {"LEAFWATCH_OTLP_ENDPOINT": receiver.url}
        with leafwatch_serve(tmp_path, "--workers", "2", env=env) as (url, _process):
            for _ in range(30):
                with httpx.Client(headers={"Connection": "close"}) as client:
                    assert post_leaf(client, url).status_code == 200

            def both_workers(spans: list[ReceivedSpan]) -> bool:
                return len({s.resource["process.pid"] for s in request_spans(spans)}) == 2

            spans = receiver.wait_for(both_workers)
    assert len(request_spans(spans)) == 30
