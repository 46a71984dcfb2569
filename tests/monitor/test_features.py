"""Features of a prediction: known answers on constructed images; stored with each prediction."""

import math
import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from leafwatch.config import Settings
from leafwatch.model.classifier import ClassifierOutput
from leafwatch.model.labels import NUM_CLASSES
from leafwatch.monitor.features import FEATURES, compute_features, laplacian_variance
from leafwatch.storage.tables import PredictionFeatureRow
from tests.conftest import image_bytes

UNIFORM = ClassifierOutput(
    probabilities=np.full(NUM_CLASSES, 1 / NUM_CLASSES, dtype=np.float32),
    embedding=np.zeros(32, dtype=np.float32),
)


def features_of(rgb: tuple[float, float, float] | np.ndarray, **facts: int) -> dict[str, float]:
    image = np.empty((1, 3, 64, 64), dtype=np.float32)
    image[0] = np.asarray(rgb, dtype=np.float32).reshape(3, 1, 1) if isinstance(rgb, tuple) else rgb
    arguments = {"width": 400, "height": 300, "size_bytes": 2048, **facts}
    return compute_features(image, UNIFORM, image_format="JPEG", **arguments).values


def test_a_flat_grey_image_has_no_colour_texture_or_contrast() -> None:
    values = features_of((0.5, 0.5, 0.5))
    assert values["brightness_mean"] == pytest.approx(0.5)
    for name in ("brightness_std", "saturation_mean", "leaf_green_share", "sharpness", "contrast"):
        assert values[name] == pytest.approx(0.0, abs=1e-6), name


def test_leaf_green_is_green_and_saturated() -> None:
    values = features_of((0.2, 0.6, 0.1))
    assert values["leaf_green_share"] == 1.0
    assert values["saturation_mean"] == pytest.approx((0.6 - 0.1) / 0.6)
    assert values["green_mean"] == pytest.approx(0.6)
    assert features_of((0.6, 0.3, 0.1))["leaf_green_share"] == 0.0  # brown


def test_blur_lowers_sharpness_and_darkness_lowers_brightness() -> None:
    checker = np.indices((64, 64)).sum(axis=0) % 2
    sharp = np.stack([checker] * 3).astype(np.float32)
    blurred = np.full_like(sharp, 0.5)
    blurred[:, ::8, :] = 1.0
    assert features_of(sharp)["sharpness"] > features_of(blurred)["sharpness"] > 0
    assert features_of(sharp * 0.5)["brightness_mean"] == pytest.approx(0.25)
    assert laplacian_variance(np.full((8, 8), 0.3, dtype=np.float32)) == 0.0


def test_file_facts_and_model_uncertainty() -> None:
    values = features_of((0.5, 0.5, 0.5), width=400, height=300, size_bytes=4096)
    assert (values["width"], values["height"], values["aspect_ratio"]) == (400, 300, 4 / 3)
    assert values["file_size_kb"] == 4.0
    assert values["entropy"] == pytest.approx(math.log(NUM_CLASSES), rel=1e-5)
    assert values["confidence"] == pytest.approx(1 / NUM_CLASSES)


def test_each_prediction_is_stored_with_its_features(
    client: TestClient, settings: Settings
) -> None:
    answer = client.post(
        "/api/v1/predict",
        files={"file": ("leaf.png", image_bytes("PNG", size=(300, 200)), "image/png")},
        data={"user_id": "farmer-1"},
    ).json()
    engine = create_engine(settings.resolved_database_url())
    with Session(engine) as session:
        row = session.scalars(select(PredictionFeatureRow)).one()
    engine.dispose()
    assert row.prediction_id == uuid.UUID(answer["prediction_id"])
    assert (row.width, row.height, row.image_format) == (300, 200, "PNG")
    assert row.confidence == pytest.approx(answer["confidence"])
    assert row.predicted_class == answer["predicted_class_id"]
    assert row.model_version == answer["model_version"]
    assert np.frombuffer(row.embedding, dtype="<f4").shape == (32,)
    for name in FEATURES:
        assert math.isfinite(getattr(row, name)), name
    assert row.leaf_green_share > 0.9  # image_bytes paints leaf green


def test_refused_uploads_leave_no_features(client: TestClient, settings: Settings) -> None:
    client.post("/api/v1/predict", files={"file": ("x", b"nope")}, data={"user_id": "u"})
    engine = create_engine(settings.resolved_database_url())
    with Session(engine) as session:
        assert session.scalars(select(PredictionFeatureRow)).all() == []
    engine.dispose()


def test_feature_names_are_the_table_columns() -> None:
    columns = set(PredictionFeatureRow.__table__.columns.keys())
    assert set(FEATURES) <= columns
