"""/metrics on both databases: what predictions, refusals and verdicts make of the figures."""

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, update

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.storage.tables import Feedback, Prediction, utcnow
from tests.conftest import image_bytes, png_with_declared_size
from tests.scrape import total


def predict(client: TestClient, data: bytes) -> dict[str, object]:
    answer = client.post(
        "/api/v1/predict",
        files={"file": ("leaf.jpg", data, "image/jpeg")},
        data={"user_id": "farmer-1"},
    )
    result: dict[str, object] = answer.json()
    return result


def judge(client: TestClient, prediction: dict[str, object], right: bool, source: str) -> None:
    body: dict[str, object] = {
        "prediction_id": prediction["prediction_id"],
        "is_correct": right,
        "feedback_source": source,
    }
    if not right:
        wrong = "Healthy" if prediction["predicted_class_name"] != "Healthy" else "Stage6"
        body["correct_class_name"] = wrong
    assert client.post("/api/v1/feedback/submit", json=body).status_code == 201


def move_back(settings: Settings, prediction: dict[str, object], age: timedelta) -> None:
    """Make a prediction look as old as `age`, as if made then."""
    engine = create_engine(settings.resolved_database_url())
    with engine.begin() as connection:
        connection.execute(
            update(Prediction)
            .where(Prediction.id == uuid.UUID(str(prediction["prediction_id"])))
            .values(timestamp=utcnow() - age)
        )
    engine.dispose()


def test_predictions_count_by_version_and_class(client: TestClient) -> None:
    first = predict(client, image_bytes())
    predict(client, image_bytes())
    text = client.get("/metrics").text
    labels = {"model_version": "1", "predicted_class": str(first["predicted_class_name"])}
    assert total(text, "model_predictions_total", **labels) == 2
    assert total(text, "model_prediction_confidence_count", **labels) == 2
    assert total(text, "model_inference_latency_seconds_count", model_version="1") == 2
    assert total(text, "model_info", model_name="banana_sigatoka_detector", model_version="1") == 1
    assert total(text, "model_loaded") == 1
    assert total(text, "leafwatch_build_info") == 1


def test_refused_uploads_are_counted_by_reason(client: TestClient) -> None:
    predict(client, b"")
    predict(client, b"plain text, not a picture")
    predict(client, png_with_declared_size(20_000, 20_000))
    predict(client, image_bytes()[:300])
    text = client.get("/metrics").text
    for reason in ("empty_file", "not_an_image", "too_many_pixels", "corrupt_image"):
        assert total(text, "api_rejected_uploads_total", reason=reason) == 1, reason
    assert total(text, "api_rejected_uploads_total") == 4
    assert total(text, "model_predictions_total") == 0


def test_accuracy_per_window_comes_from_the_effective_verdicts(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"metrics_cache_seconds": 0})
    with TestClient(create_app(settings)) as client:
        recent = [predict(client, image_bytes()) for _ in range(4)]
        hours_old = predict(client, image_bytes())
        days_old = predict(client, image_bytes())
        never_judged = predict(client, image_bytes())
        move_back(settings, hours_old, timedelta(hours=3))
        move_back(settings, days_old, timedelta(days=2))
        move_back(settings, never_judged, timedelta(minutes=5))
        for prediction in recent[:3]:
            judge(client, prediction, True, "mobile_app")
        judge(client, recent[3], True, "mobile_app")
        judge(client, recent[3], False, "expert_review")  # the expert's verdict counts
        judge(client, recent[3], True, "web")  # and outranks a later app verdict
        judge(client, hours_old, False, "web")
        judge(client, days_old, True, "web")
        text = client.get("/metrics").text
    expected = {"1h": (4, 0.75), "24h": (5, 0.6), "7d": (6, 4 / 6)}
    for window, (count, accuracy) in expected.items():
        labels = {"model_version": "1", "time_window": window}
        assert total(text, "model_accuracy_feedback_count", **labels) == count, window
        assert total(text, "model_accuracy", **labels) == accuracy, window
    # The same verdicts split by predicted class: (prediction, age in hours, effective verdict).
    judged = [(p, 0, True) for p in recent[:3]] + [(recent[3], 0, False)]
    judged += [(hours_old, 3, False), (days_old, 48, True)]
    for window, hours in {"1h": 1, "24h": 24, "7d": 168}.items():
        by_class: dict[str, list[bool]] = {}
        for prediction, age, right in judged:
            if age < hours:
                by_class.setdefault(str(prediction["predicted_class_name"]), []).append(right)
        for name, verdicts in by_class.items():
            labels = {"model_version": "1", "predicted_class": name, "time_window": window}
            assert total(text, "model_class_accuracy_feedback_count", **labels) == len(verdicts)
            assert total(text, "model_class_accuracy", **labels) == sum(verdicts) / len(verdicts)
        counted = total(text, "model_class_accuracy_feedback_count", time_window=window)
        assert counted == expected[window][0]
    assert total(text, "feedback_submissions_total") == 8
    assert total(text, "feedback_submissions_total", is_correct="false") == 2
    assert total(text, "feedback_submissions_total", feedback_source="expert_review") == 1


def test_accuracy_is_as_of_the_start_of_the_cache_period(settings: Settings) -> None:
    with TestClient(
        create_app(settings.model_copy(update={"metrics_cache_seconds": 3600}))
    ) as client:
        judged_earlier, judged_now = predict(client, image_bytes()), predict(client, image_bytes())
        judge(client, judged_earlier, True, "web")
        for prediction in (judged_earlier, judged_now):
            move_back(settings, prediction, timedelta(hours=2))
        move_verdicts_back(settings, timedelta(hours=2))
        judge(client, judged_now, True, "web")
        # Figures are as of the start of this hour: the verdict just given waits for the next.
        scrapes = [client.get("/metrics").text for _ in range(2)]
    labels = {"model_version": "1", "time_window": "24h"}
    for text in scrapes:
        assert total(text, "model_accuracy_feedback_count", **labels) == 1
    with TestClient(create_app(settings.model_copy(update={"metrics_cache_seconds": 0}))) as client:
        assert total(client.get("/metrics").text, "model_accuracy_feedback_count", **labels) == 2


def move_verdicts_back(settings: Settings, age: timedelta) -> None:
    """Make every verdict so far look as old as `age`."""
    engine = create_engine(settings.resolved_database_url())
    with engine.begin() as connection:
        connection.execute(update(Feedback).values(timestamp=utcnow() - age))
    engine.dispose()


def test_a_scrape_still_answers_when_the_database_is_down(tmp_path: Path) -> None:
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:9/leafwatch?connect_timeout=2"
    settings = Settings(var_dir=tmp_path / "var", database_url=nowhere, migrate_on_start=False)
    with TestClient(create_app(settings)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert total(response.text, "model_loaded") == 1
    assert "model_accuracy_feedback_count" not in response.text


def test_estimated_accuracy_is_the_mean_confidence_before_any_feedback(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"metrics_cache_seconds": 0})
    with TestClient(create_app(settings)) as client:
        made = [predict(client, image_bytes(size=(200 + 40 * n, 240))) for n in range(4)]
        text = client.get("/metrics").text
    expected = sum(float(str(p["confidence"])) for p in made) / len(made)
    labels = {"model_version": "1", "time_window": "1h"}
    assert total(text, "model_estimated_accuracy", **labels) == pytest.approx(expected)
    assert total(text, "model_accuracy_feedback_count", **labels) == 0
    assert "model_accuracy_estimation_gap{" not in text  # no verdicts: nothing to compare yet


def test_usage_gauges_count_distinct_users_and_the_feedback_rate(settings: Settings) -> None:
    settings = settings.model_copy(update={"metrics_cache_seconds": 0})
    with TestClient(create_app(settings)) as client:
        made = [
            client.post(
                "/api/v1/predict",
                files={"file": ("leaf.jpg", image_bytes(), "image/jpeg")},
                data={"user_id": f"farmer-{n % 3}"},
            ).json()
            for n in range(6)
        ]
        judge(client, made[0], True, "mobile_app")
        judge(client, made[1], False, "web")
        text = client.get("/metrics").text
    assert total(text, "usage_active_users", window="1d") == 3
    assert total(text, "usage_active_users", window="30d") == 3
    assert total(text, "usage_feedback_rate", window="7d") == pytest.approx(2 / 6)
