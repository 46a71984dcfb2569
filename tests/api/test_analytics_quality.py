"""GET /api/v1/analytics/quality on both databases: windows, ranges, verdicts, refusals."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.service.quality import wilson_interval
from leafwatch.storage.tables import ModelPerformance, utcnow
from tests.api.test_metrics import judge, move_back, predict
from tests.conftest import image_bytes
from tests.scrape import total

QUALITY = "/api/v1/analytics/quality"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_every_window_counts_the_effective_verdicts(client: TestClient, settings: Settings) -> None:
    recent = [predict(client, image_bytes()) for _ in range(10)]
    old = predict(client, image_bytes())
    predict(client, image_bytes())  # never judged
    move_back(settings, old, timedelta(days=2))
    for prediction in recent[:8]:
        judge(client, prediction, True, "mobile_app")
    for prediction in recent[8:]:
        judge(client, prediction, False, "web")
    judge(client, recent[7], False, "expert_review")  # the expert overrules the app
    judge(client, recent[7], True, "mobile_app")  # and a later app verdict does not overrule it
    judge(client, old, True, "web")
    answer = client.get(QUALITY)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["start"] is None
    assert body["classes"] == list(CLASS_NAMES)
    assert body["confidence_level"] == 0.95
    windows = {entry["window"]: entry for entry in body["windows"]}
    assert list(windows) == ["1h", "24h", "7d", "30d"]
    assert {entry["model_version"] for entry in body["windows"]} == {"1"}
    hour, week = windows["1h"], windows["7d"]
    assert (hour["predictions"], hour["reviewed"], hour["correct"]) == (11, 10, 7)
    assert hour["accuracy"] == pytest.approx(0.7)
    assert (hour["accuracy_low"], hour["accuracy_high"]) == pytest.approx(wilson_interval(7, 10))
    assert windows["24h"]["reviewed"] == 10
    assert (week["predictions"], week["reviewed"], week["correct"]) == (12, 11, 8)
    end = datetime.fromisoformat(body["end"])
    assert datetime.fromisoformat(week["start"]) == end - timedelta(days=7)
    # One image, one predicted class; the wrong verdicts name another class.
    predicted = str(recent[0]["predicted_class_name"])
    truth = "Healthy" if predicted != "Healthy" else "Stage6"
    p, t = CLASS_NAMES.index(predicted), CLASS_NAMES.index(truth)
    matrix = hour["confusion_matrix"]
    assert matrix[p][p] == 7
    assert matrix[t][p] == 3
    assert sum(map(sum, matrix)) == 10
    figures = hour["per_class"][predicted]
    assert (figures["predictions"], figures["reviewed"], figures["correct"]) == (11, 10, 7)
    assert figures["precision"] == pytest.approx(0.7)
    assert figures["recall"] == 1.0
    assert hour["per_class"][truth]["recall"] == 0.0
    assert hour["per_class"][truth]["precision"] is None
    confidence = float(str(recent[0]["confidence"]))
    assert hour["mean_confidence_correct"] == pytest.approx(confidence)
    assert hour["mean_confidence_incorrect"] == pytest.approx(confidence)


def test_from_and_to_give_one_range(client: TestClient, settings: Settings) -> None:
    old = predict(client, image_bytes())
    judge(client, old, False, "expert_review")
    move_back(settings, old, timedelta(days=2))
    predict(client, image_bytes())
    now = utcnow()
    params = {
        "from": (now - timedelta(days=3)).isoformat(),
        "to": (now - timedelta(days=1)).isoformat(),
    }
    body = client.get(QUALITY, params=params).json()
    assert datetime.fromisoformat(body["start"]) == now - timedelta(days=3)
    [entry] = body["windows"]
    assert entry["window"] == "range"
    assert (entry["predictions"], entry["reviewed"], entry["correct"]) == (1, 1, 0)
    assert entry["accuracy"] == 0.0
    assert entry["accuracy_high"] == pytest.approx(wilson_interval(0, 1)[1])  # type: ignore[index]


def test_an_offset_or_a_naive_time_is_read_as_the_same_utc_instant(client: TestClient) -> None:
    nairobi = client.get(QUALITY, params={"to": "2026-03-01T15:00:00+03:00"}).json()
    naive = client.get(QUALITY, params={"to": "2026-03-01T12:00:00"}).json()
    assert datetime.fromisoformat(nairobi["end"]) == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert nairobi["end"] == naive["end"]


def test_windows_without_verdicts_have_no_accuracy(client: TestClient) -> None:
    predict(client, image_bytes())
    body = client.get(QUALITY).json()
    assert len(body["windows"]) == 4
    for entry in body["windows"]:
        assert entry["predictions"] == 1
        assert entry["reviewed"] == 0
        assert entry["accuracy"] is None
        assert entry["accuracy_low"] is None
        assert entry["accuracy_high"] is None
        assert entry["mean_confidence_correct"] is None
        assert entry["mean_confidence"] is not None


def test_no_predictions_and_unknown_versions_give_no_windows(client: TestClient) -> None:
    assert client.get(QUALITY).json()["windows"] == []
    predict(client, image_bytes())
    assert len(client.get(QUALITY, params={"model_version": "1"}).json()["windows"]) == 4
    other = client.get(QUALITY, params={"model_version": "2"}).json()
    assert other["model_version"] == "2"
    assert other["windows"] == []


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "must be before"),
        ({"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "must be before"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"model_version": "v" * 65}, "model_version"),
        ({"model_version": "a\x00b"}, "model_version"),
    ],
)
def test_bad_parameters_are_refused_with_422(
    client: TestClient, params: dict[str, str], says: str
) -> None:
    answer = client.get(QUALITY, params=params)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == ("invalid_period" if says == "must be before" else "invalid_request")
    assert says in body["detail"]


def test_openapi_describes_the_route_and_every_field(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"][QUALITY]["get"]
    assert operation["description"]
    assert {parameter["name"] for parameter in operation["parameters"]} == {
        "from",
        "to",
        "model_version",
    }
    components = schema["components"]["schemas"]
    for name in ("QualityOut", "WindowQualityOut", "ClassQualityOut"):
        for field, spec in components[name]["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"


def test_the_scheduler_fills_the_daily_rows_and_metrics_carry_the_interval(
    settings: Settings,
) -> None:
    with TestClient(create_app(settings)) as client:
        made = [predict(client, image_bytes()) for _ in range(10)]
        for index, prediction in enumerate(made):
            judge(client, prediction, index < 8, "mobile_app")
    scheduled = settings.model_copy(
        update={"performance_interval_seconds": 86400, "metrics_cache_seconds": 0}
    )
    with TestClient(create_app(scheduled)) as client:
        engine = client.app.state.runtime.engine  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while True:
            with Session(engine) as session:
                rows = list(session.scalars(select(ModelPerformance)))
            if rows or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        text = client.get("/metrics").text
    assert [(r.model_version, r.day, r.reviewed, r.correct) for r in rows] == [
        ("1", utcnow().date(), 10, 8)
    ]
    low, high = wilson_interval(8, 10) or (0.0, 0.0)
    labels = {"model_version": "1", "time_window": "1h"}
    assert total(text, "model_accuracy_lower_bound", **labels) == pytest.approx(low)
    assert total(text, "model_accuracy_upper_bound", **labels) == pytest.approx(high)
