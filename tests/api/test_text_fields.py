"""Any text a client sends in a text field gets a 2xx or a 4xx, never a 5xx, on both databases."""

import json
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.api.test_feedback import predict
from tests.conftest import image_bytes

# Every code point, control characters and lone surrogates included.
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
PNG = image_bytes("PNG", (24, 24))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(user_id=any_text, location=st.none() | any_text)
@example(user_id="farmer\x00", location=None)
@example(user_id="farmer", location="Kisumu\x00")
@example(user_id="", location=None)
@example(user_id="caf\u00e9 \U0001f34c", location="\u5317\u4eac")
def test_any_user_id_or_location_is_answered_without_a_server_error(
    client: TestClient, user_id: str, location: str | None
) -> None:
    form = (
        {"user_id": user_id}
        if location is None
        else {"user_id": user_id, "user_location": location}
    )
    try:
        encoded = {key: value.encode("utf-8") for key, value in form.items()}
    except UnicodeEncodeError:
        return  # a lone surrogate cannot travel in a multipart form at all
    response = client.post(
        "/api/v1/predict",
        files={
            "file": ("leaf.png", PNG, "image/png"),
            **{k: (None, v) for k, v in encoded.items()},
        },
    )
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        stored = client.get(f"/api/v1/predictions/{response.json()['prediction_id']}").json()
        assert stored["user_id"] == user_id


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(comment=any_text)
@example(comment="halo\x00")
@example(comment="halo\ud800")
@example(comment="line one\nline two\ttab")
def test_any_comment_is_answered_without_a_server_error(client: TestClient, comment: str) -> None:
    prediction = predict(client)
    body: dict[str, Any] = {
        "prediction_id": prediction["prediction_id"],
        "is_correct": True,
        "feedback_source": "web",
        "user_comment": comment,
    }
    response = client.post(
        "/api/v1/feedback/submit",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:
        assert response.json()["user_comment"] == comment
