"""`leafwatch train` with its defaults reproduces the bundled model's recipe and quality."""

import json
from pathlib import Path

import pytest

from leafwatch.model.registry import bundled_model


@pytest.mark.slow
@pytest.mark.train
def test_default_training_reproduces_the_bundled_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from leafwatch.model.train import train_model

    _, bundled = bundled_model()
    card = train_model(tmp_path, progress=False)
    assert card["data"] == bundled["data"]
    assert card["input_size"] == bundled["input_size"]
    assert card["embedding_dim"] == bundled["embedding_dim"]
    ours, theirs = card["metrics"], bundled["metrics"]
    # Same recipe and seed; allow for a different CPU's floating point, not for a worse model.
    assert ours["heldout_accuracy"] == pytest.approx(theirs["heldout_accuracy"], abs=0.01)
    assert ours["ece"] == pytest.approx(theirs["ece"], abs=0.01)
    # The temperature is fitted on a calibration split the model gets almost all right, so small
    # changes in the rendered leaves move it a lot: with the same code, a later environment gives
    # 0.67 (the same twice) against the bundle's 0.77, most likely through a new Pillow or numpy
    # release, while accuracy and ECE stay within their tolerances. Those two are the gates.
    assert ours["temperature"] == pytest.approx(theirs["temperature"], rel=0.25)
    assert json.loads((tmp_path / "card.json").read_text())["onnx_sha256"] == card["onnx_sha256"]
