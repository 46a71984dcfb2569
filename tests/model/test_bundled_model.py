"""The model shipped in the package: the serving contract, and accuracy and calibration on a
fresh generated sample that training never saw."""

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from leafwatch.model.calibration import expected_calibration_error
from leafwatch.model.labels import CLASS_NAMES, NUM_CLASSES
from leafwatch.model.preprocess import decode_image, to_model_input
from leafwatch.model.synth import Nuisance, leaf_jpeg

BUNDLED = Path(__file__).parents[2] / "src" / "leafwatch" / "model" / "bundled"
# Training draws from seed 7; this seed's leaves are new to the model.
FRESH_SEED = 20_261_129
FRESH_PER_CLASS = 100


@pytest.fixture(scope="module")
def card() -> dict[str, object]:
    loaded: dict[str, object] = json.loads((BUNDLED / "card.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(str(BUNDLED / "model.onnx"), providers=["CPUExecutionProvider"])


def test_bundled_model_is_small_and_matches_its_card(card: dict[str, object]) -> None:
    model_bytes = (BUNDLED / "model.onnx").read_bytes()
    assert len(model_bytes) < 5 * 2**20
    assert card["onnx_sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert card["name"] == "banana_sigatoka_detector"
    assert card["classes"] == list(CLASS_NAMES)
    assert "version" not in card
    metrics = card["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["heldout_accuracy"] >= 0.90
    assert metrics["ece"] <= 0.05
    for field in ("per_class_recall", "confusion_matrix", "ece_before_calibration", "temperature"):
        assert field in metrics


def test_bundled_model_has_the_serving_inputs_and_outputs(
    session: ort.InferenceSession, card: dict[str, object]
) -> None:
    size = card["input_size"]
    assert isinstance(size, int)
    (image,) = session.get_inputs()
    assert image.name == "image"
    assert image.shape[1:] == [3, size, size]
    probabilities, embedding = session.get_outputs()
    assert probabilities.name == "probabilities"
    assert embedding.name == "embedding"
    batch = np.random.default_rng(0).random((4, 3, size, size), dtype=np.float32)
    p, e = session.run(None, {"image": batch})
    assert p.shape == (4, NUM_CLASSES)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert e.shape[0] == 4
    assert e.shape[1] == card["embedding_dim"]
    assert e.shape[1] <= 64


def test_bundled_model_is_accurate_and_calibrated_on_a_fresh_sample(
    session: ort.InferenceSession, card: dict[str, object]
) -> None:
    size = card["input_size"]
    assert isinstance(size, int)
    nuisance = Nuisance()
    inputs, labels = [], []
    for class_id in range(NUM_CLASSES):
        for index in range(FRESH_PER_CLASS):
            data = leaf_jpeg(class_id, seed=FRESH_SEED, index=index, nuisance=nuisance)
            decoded = decode_image(data, max_bytes=10 * 2**20, max_pixels=40_000_000)
            inputs.append(to_model_input(decoded.image, size))
            labels.append(class_id)
    (probabilities,) = session.run(["probabilities"], {"image": np.concatenate(inputs)})
    predicted = probabilities.argmax(axis=1)
    correct = predicted == np.asarray(labels)
    assert correct.mean() >= 0.90
    assert expected_calibration_error(probabilities.max(axis=1), correct, bins=15) <= 0.05
