"""POST /api/v1/predict: the happy path on both databases, and every kind of bad input."""

import io
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import create_engine, func, select

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.storage.tables import Prediction
from tests.conftest import image_bytes, png_with_declared_size

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def post_image(
    client: TestClient, data: bytes, *, user_id: str | None = "farmer-1", **form: str
) -> Any:
    fields = {"user_id": user_id, **form} if user_id is not None else dict(form)
    return client.post(
        "/api/v1/predict", files={"file": ("leaf.bin", data, "image/jpeg")}, data=fields
    )


def count_predictions(settings: Settings) -> int:
    engine = create_engine(settings.resolved_database_url())
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(Prediction)).scalar_one()
            )
    finally:
        engine.dispose()


def test_a_prediction_answers_every_field_and_is_stored(
    client: TestClient, settings: Settings
) -> None:
    data = image_bytes("JPEG", (640, 480))
    response = client.post(
        "/api/v1/predict",
        files={"file": ("leaf.jpg", data, "image/jpeg")},
        data={"user_id": "farmer-7", "user_location": "Kisumu"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    prediction_id = uuid.UUID(body["prediction_id"])
    assert body["predicted_class_name"] == CLASS_NAMES[body["predicted_class_id"]]
    assert set(body["probabilities"]) == set(CLASS_NAMES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["confidence"] == pytest.approx(max(body["probabilities"].values()), abs=1e-5)
    assert body["model_name"] == "banana_sigatoka_detector"
    assert body["model_version"] == "1"
    assert body["inference_time_ms"] > 0
    assert body["timestamp"].endswith(("Z", "+00:00"))

    stored = client.get(f"/api/v1/predictions/{prediction_id}").json()
    assert stored["user_id"] == "farmer-7"
    assert stored["user_location"] == "Kisumu"
    assert (stored["image_width"], stored["image_height"]) == (640, 480)
    assert stored["image_format"] == "JPEG"
    assert stored["image_size_kb"] == pytest.approx(len(data) / 1024, abs=1e-3)
    path = settings.resolved_image_dir() / stored["image_hash"][:2] / stored["image_hash"][2:4]
    assert (path / f"{stored['image_hash']}.jpg").read_bytes() == data


@pytest.mark.parametrize(
    ("fmt", "size", "mode"),
    [
        ("JPEG", (4000, 3000), "RGB"),
        ("PNG", (300, 300), "RGBA"),
        ("PNG", (300, 300), "L"),
        ("WEBP", (500, 375), "RGB"),
        ("JPEG", (320, 240), "CMYK"),
        ("PNG", (1, 1), "RGB"),
    ],
    ids=["12MP-jpeg", "rgba-png", "gray-png", "webp", "cmyk-jpeg", "1px-png"],
)
def test_images_phones_and_browsers_make_are_accepted(
    client: TestClient, fmt: str, size: tuple[int, int], mode: str
) -> None:
    data = image_bytes(fmt, size, mode, **({"quality": 85} if fmt == "JPEG" else {}))
    response = post_image(client, data)
    assert response.status_code == 200, response.text


def test_16_bit_and_exif_rotated_images_are_accepted(client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((50, 80), 40000, dtype=np.uint16)).save(buffer, "PNG")
    assert post_image(client, buffer.getvalue()).status_code == 200
    exif = Image.Exif()
    exif[0x0112] = 8
    rotated = image_bytes("JPEG", (300, 100), exif=exif)
    response = post_image(client, rotated)
    prediction_id = response.json()["prediction_id"]
    stored = client.get(f"/api/v1/predictions/{prediction_id}").json()
    assert (stored["image_width"], stored["image_height"]) == (100, 300)


@pytest.mark.parametrize(
    ("data", "form", "status", "code"),
    [
        (b"", {}, 400, "empty_file"),
        (b"hello, I am text", {}, 415, "not_an_image"),
        (image_bytes("GIF", (20, 20)), {}, 415, "unsupported_format"),
        (image_bytes("JPEG", (400, 400))[:200], {}, 422, "corrupt_image"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 100, {}, 415, "not_an_image"),
        (png_with_declared_size(9000, 9000), {}, 413, "too_many_pixels"),
        (image_bytes("PNG", (20, 20)), {"user_id": None}, 422, "invalid_request"),
        (image_bytes("PNG", (20, 20)), {"user_id": ""}, 422, "invalid_request"),
        (image_bytes("PNG", (20, 20)), {"user_id": "u" * 129}, 422, "invalid_request"),
        (image_bytes("PNG", (20, 20)), {"user_location": "x" * 257}, 422, "invalid_request"),
        (image_bytes("PNG", (20, 20)), {"user_id": "farmer\x00-1"}, 422, "invalid_request"),
        (image_bytes("PNG", (20, 20)), {"user_location": "Kisumu\n"}, 422, "invalid_request"),
    ],
    ids=[
        "empty",
        "text",
        "gif",
        "truncated",
        "jpeg-header-only",
        "81-megapixels",
        "no-user-id",
        "empty-user-id",
        "long-user-id",
        "long-location",
        "nul-in-user-id",
        "newline-in-location",
    ],
)
def test_bad_uploads_get_a_clear_4xx_and_store_nothing(
    client: TestClient,
    settings: Settings,
    data: bytes,
    form: dict[str, str | None],
    status: int,
    code: str,
) -> None:
    form = dict(form)  # parameters are shared between the two database runs
    user_id = form.pop("user_id", "farmer-1")
    response = post_image(client, data, user_id=user_id, **form)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert body["detail"]
    assert count_predictions(settings) == 0
    image_dir = settings.resolved_image_dir()
    assert [path for path in image_dir.rglob("*") if path.is_file()] == []
    # and the service keeps serving
    assert post_image(client, image_bytes("PNG", (32, 32))).status_code == 200


def test_a_missing_file_is_a_validation_error(client: TestClient) -> None:
    response = client.post("/api/v1/predict", data={"user_id": "farmer-1"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert "file" in response.json()["detail"]


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path, database_url: str) -> None:
    settings = Settings(
        var_dir=tmp_path / "var",
        database_url=database_url,
        migrate_on_start=True,
        max_upload_bytes=50_000,
    )
    big = image_bytes("PNG", (400, 400), "RGB", compress_level=0)
    assert len(big) > 50_000
    with TestClient(create_app(settings)) as client:
        response = post_image(client, big)
        assert response.status_code == 413
        assert response.json()["error"] == "file_too_large"
        assert count_predictions(settings) == 0


def test_the_default_limit_refuses_a_file_over_10_mib(
    client: TestClient, settings: Settings
) -> None:
    assert settings.max_upload_bytes == 10 * 1024 * 1024
    just_over = image_bytes("PNG", (16, 16)) + b"\0" * (10 * 1024 * 1024)
    response = post_image(client, just_over)
    assert response.status_code == 413
    assert response.json()["error"] == "file_too_large"
    assert count_predictions(settings) == 0
