"""Feedback: verdicts are all kept, the authoritative latest one counts, bad input is refused."""

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import image_bytes


def predict(client: TestClient, user_id: str = "farmer-1") -> dict[str, Any]:
    response = client.post(
        "/api/v1/predict",
        files={"file": ("leaf.png", image_bytes("PNG", (64, 64)), "image/png")},
        data={"user_id": user_id},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def other_class(name: str) -> str:
    return "Stage3" if name != "Stage3" else "Stage4"


def verdict(client: TestClient, prediction: dict[str, Any], correct: bool, source: str) -> Any:
    body: dict[str, Any] = {
        "prediction_id": prediction["prediction_id"],
        "is_correct": correct,
        "feedback_source": source,
    }
    if not correct:
        body["correct_class_name"] = other_class(prediction["predicted_class_name"])
    return client.post("/api/v1/feedback/submit", json=body)


def test_feedback_is_stored_with_every_field(client: TestClient) -> None:
    prediction = predict(client)
    response = client.post(
        "/api/v1/feedback/submit",
        json={
            "prediction_id": prediction["prediction_id"],
            "is_correct": False,
            "correct_class_name": other_class(prediction["predicted_class_name"]),
            "feedback_source": "mobile_app",
            "user_comment": "spots have yellow halos",
            "confidence_rating": 4,
        },
    )
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["correct_class_name"] == other_class(prediction["predicted_class_name"])
    assert stored["confidence_rating"] == 4
    record = client.get(f"/api/v1/predictions/{prediction['prediction_id']}").json()
    assert [f["feedback_id"] for f in record["feedback"]] == [stored["feedback_id"]]


def test_a_correct_verdict_records_the_predicted_class_as_the_true_one(client: TestClient) -> None:
    prediction = predict(client)
    stored = verdict(client, prediction, True, "web").json()
    assert stored["correct_class_name"] == prediction["predicted_class_name"]


def test_expert_review_outranks_later_app_feedback_and_latest_wins_within_a_rank(
    client: TestClient,
) -> None:
    judged = [predict(client) for _ in range(3)]
    # 1: app says wrong, then an expert says right, then the app says wrong again -> right
    assert verdict(client, judged[0], False, "mobile_app").status_code == 201
    assert verdict(client, judged[0], True, "expert_review").status_code == 201
    assert verdict(client, judged[0], False, "mobile_app").status_code == 201
    # 2: web says right, then later web says wrong -> wrong (latest of equal rank)
    assert verdict(client, judged[1], True, "web").status_code == 201
    assert verdict(client, judged[1], False, "web").status_code == 201
    # 3: no feedback

    stats = client.get("/api/v1/feedback/stats", params={"days": 7}).json()
    assert stats["total_predictions"] == 3
    assert stats["reviewed_predictions"] == 2
    assert stats["correct"] == 1
    assert stats["accuracy"] == pytest.approx(0.5)
    assert stats["feedback_rate"] == pytest.approx(2 / 3)
    assert stats["total_feedback"] == 5  # every row is kept
    assert stats["feedback_by_source"] == {"mobile_app": 2, "web": 2, "expert_review": 1}
    per_class = stats["per_class"]
    assert sum(entry["predicted"] for entry in per_class.values()) == 3
    assert sum(entry["reviewed"] for entry in per_class.values()) == 2
    assert sum(entry["actual"] for entry in per_class.values()) == 2


def test_stats_of_an_empty_window_have_no_accuracy(client: TestClient) -> None:
    stats = client.get("/api/v1/feedback/stats").json()
    assert stats["days"] == 7
    assert stats["total_predictions"] == 0
    assert stats["accuracy"] is None
    assert stats["feedback_rate"] is None


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"prediction_id": "not-a-uuid"}, 422, "invalid_request"),
        ({"prediction_id": str(uuid.uuid4())}, 404, "prediction_not_found"),
        ({"is_correct": False, "correct_class_name": None}, 422, "invalid_request"),
        ({"is_correct": False, "correct_class_name": "Stage9"}, 422, "invalid_request"),
        ({"is_correct": False, "correct_class_name": "healthy"}, 422, "invalid_request"),
        ({"feedback_source": "twitter"}, 422, "invalid_request"),
        ({"confidence_rating": 0}, 422, "invalid_request"),
        ({"confidence_rating": 6}, 422, "invalid_request"),
        ({"user_comment": "x" * 2001}, 422, "invalid_request"),
        ({"user_comment": "spots\x00"}, 422, "invalid_request"),
        ({"user_comment": "spots\ud800"}, 422, "invalid_request"),
        ({"unexpected": 1}, 422, "invalid_request"),
        ({"is_correct": False, "correct_class_name": "PREDICTED"}, 422, "invalid_feedback"),
        ({"is_correct": True, "correct_class_name": "OTHER"}, 422, "invalid_feedback"),
    ],
    ids=[
        "malformed-uuid",
        "unknown-prediction",
        "wrong-without-class",
        "unknown-class",
        "class-wrong-case",
        "unknown-source",
        "rating-0",
        "rating-6",
        "long-comment",
        "nul-in-comment",
        "lone-surrogate-in-comment",
        "extra-field",
        "wrong-but-same-class",
        "right-but-other-class",
    ],
)
def test_bad_feedback_gets_a_clear_4xx_and_stores_nothing(
    client: TestClient, change: dict[str, Any], status: int, code: str
) -> None:
    prediction = predict(client)
    body: dict[str, Any] = {
        "prediction_id": prediction["prediction_id"],
        "is_correct": True,
        "feedback_source": "web",
        **change,
    }
    if body.get("correct_class_name") == "PREDICTED":
        body["correct_class_name"] = prediction["predicted_class_name"]
    if body.get("correct_class_name") == "OTHER":
        body["correct_class_name"] = other_class(prediction["predicted_class_name"])
    # json.dumps escapes non-ASCII, so even a lone surrogate reaches the server as JSON text
    response = client.post(
        "/api/v1/feedback/submit",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["detail"]
    assert client.get("/api/v1/feedback/stats").json()["total_feedback"] == 0


def test_a_body_that_is_not_json_is_refused(client: TestClient) -> None:
    response = client.post(
        "/api/v1/feedback/submit",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("days", ["0", "-1", "abc", "99999"])
def test_a_bad_window_is_refused(client: TestClient, days: str) -> None:
    response = client.get("/api/v1/feedback/stats", params={"days": days})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


def test_a_comment_may_have_line_breaks(client: TestClient) -> None:
    prediction = predict(client)
    response = client.post(
        "/api/v1/feedback/submit",
        json={
            "prediction_id": prediction["prediction_id"],
            "is_correct": True,
            "feedback_source": "expert_review",
            "user_comment": "yellow halos\n\tsunken centres",
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["user_comment"] == "yellow halos\n\tsunken centres"
