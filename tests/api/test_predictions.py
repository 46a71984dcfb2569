"""Reading predictions back: one by id, and pages by user."""

import uuid

from fastapi.testclient import TestClient

from tests.api.test_feedback import predict


def test_an_unknown_id_is_404_and_a_malformed_one_422(client: TestClient) -> None:
    missing = client.get(f"/api/v1/predictions/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["error"] == "prediction_not_found"
    malformed = client.get("/api/v1/predictions/12345")
    assert malformed.status_code == 422
    assert malformed.json()["error"] == "invalid_request"


def test_pages_walk_a_users_predictions_newest_first_without_gaps(client: TestClient) -> None:
    mine = [predict(client, "alice")["prediction_id"] for _ in range(7)]
    predict(client, "bob")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"user_id": "alice", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/predictions", params=params).json()
        seen += [item["prediction_id"] for item in page["items"]]
        assert all(item["user_id"] == "alice" for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(mine))
    everyone = client.get("/api/v1/predictions", params={"limit": 100}).json()
    assert len(everyone["items"]) == 8
    assert everyone["next_cursor"] is None


def test_a_forged_cursor_is_refused(client: TestClient) -> None:
    for cursor in ("garbage", "eyJ4IjoxfQ", "W10"):
        response = client.get("/api/v1/predictions", params={"cursor": cursor})
        assert response.status_code == 400, cursor
        assert response.json()["error"] == "invalid_cursor"


def test_a_bad_limit_is_refused(client: TestClient) -> None:
    for limit in ("0", "501", "x"):
        response = client.get("/api/v1/predictions", params={"limit": limit})
        assert response.status_code == 422


def test_a_user_filter_with_control_characters_is_refused(client: TestClient) -> None:
    response = client.get("/api/v1/predictions", params={"user_id": "a\x00b"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
