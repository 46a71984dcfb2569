"""Training end to end on a tiny budget: an ONNX model with the serving contract, and its card."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from leafwatch.model.labels import CLASS_NAMES, NUM_CLASSES  # noqa: E402
from leafwatch.model.train import (  # noqa: E402
    as_model_input,
    fit_temperature,
    render_inputs,
    train_model,
)
from leafwatch.monitor.reference import FeatureSample  # noqa: E402

pytestmark = pytest.mark.train

CARD_FIELDS = {
    "name",
    "classes",
    "input_size",
    "embedding_dim",
    "input",
    "data",
    "training",
    "metrics",
    "created_at",
    "onnx_sha256",
    "reference",
}
METRIC_FIELDS = {
    "heldout_accuracy",
    "per_class_recall",
    "confusion_matrix",
    "ece",
    "ece_before_calibration",
    "temperature",
    "heldout_size",
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out_dir = tmp_path_factory.mktemp("model")
    card = train_model(
        out_dir, seed=3, per_class=8, epochs=1, input_size=48, reference_per_class=4, progress=False
    )
    return out_dir, card


def test_smoke_run_writes_an_onnx_model_with_both_outputs(
    tiny_model: tuple[Path, dict[str, object]],
) -> None:
    out_dir, _ = tiny_model
    session = ort.InferenceSession(str(out_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["probabilities", "embedding"]
    for batch in (1, 3):
        image = np.random.default_rng(0).random((batch, 3, 48, 48), dtype=np.float32)
        probabilities, embedding = session.run(None, {"image": image})
        assert probabilities.shape == (batch, NUM_CLASSES)
        assert probabilities.dtype == np.float32
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        assert embedding.shape == (batch, 32)


def test_smoke_run_writes_a_card_with_every_field(
    tiny_model: tuple[Path, dict[str, object]],
) -> None:
    out_dir, card = tiny_model
    assert json.loads((out_dir / "card.json").read_text()) == card
    assert set(card) == CARD_FIELDS
    assert "version" not in card
    assert card["name"] == "banana_sigatoka_detector"
    assert card["classes"] == list(CLASS_NAMES)
    assert card["input_size"] == 48
    metrics = card["metrics"]
    assert isinstance(metrics, dict)
    assert set(metrics) == METRIC_FIELDS
    assert metrics["heldout_size"] == sum(map(sum, metrics["confusion_matrix"]))
    assert set(metrics["per_class_recall"]) == set(CLASS_NAMES)
    data = card["data"]
    assert isinstance(data, dict)
    assert data["generator"] == "leafwatch.model.synth"
    assert set(data["splits"]) == {"train", "calibration", "test"}
    test_split_end = data["splits"]["test"]["indices"][1]
    assert card["reference"] == {
        "per_class": 4,
        "indices": [test_split_end, test_split_end + 4],
        "count": 28,
    }
    reference = FeatureSample.load(out_dir / "reference.npz")
    assert len(reference) == 28
    assert reference.embeddings.shape == (28, 32)
    training = card["training"]
    assert isinstance(training, dict)
    assert {"epochs", "batch_size", "lr", "optimizer", "seconds", "torch_version"} <= set(training)


def test_stored_pixels_are_exactly_the_serving_input() -> None:
    from leafwatch.model.preprocess import decode_image, to_model_input
    from leafwatch.model.synth import Nuisance, leaf_jpeg

    stored = render_inputs([(2, 0), (5, 1)], seed=1, nuisance=Nuisance(), input_size=40, workers=1)
    for row, (class_id, index) in enumerate([(2, 0), (5, 1)]):
        data = leaf_jpeg(class_id, seed=1, index=index, nuisance=Nuisance())
        served = to_model_input(
            decode_image(data, max_bytes=10 * 2**20, max_pixels=40_000_000).image, 40
        )
        assert np.array_equal(as_model_input(stored[row : row + 1]), served)


def test_temperature_scaling_softens_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, NUM_CLASSES, 2000)
    # Right 70% of the time, but with logits that claim near certainty.
    predicted = np.where(rng.random(2000) < 0.7, labels, rng.integers(0, NUM_CLASSES, 2000))
    logits = rng.normal(0.0, 1.0, (2000, NUM_CLASSES))
    logits[np.arange(2000), predicted] += 12.0
    assert fit_temperature(logits, labels) > 2.0
    assert fit_temperature(logits / 20.0, labels) < 1.0
