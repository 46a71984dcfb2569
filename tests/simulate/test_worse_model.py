"""The worse model: the good one's graph with late stages swapped, as confident as ever."""

from pathlib import Path

import numpy as np

from leafwatch.model.classifier import OnnxClassifier
from leafwatch.model.registry import LocalModelRegistry
from leafwatch.model.synth import render_leaf
from leafwatch.simulate.scenarios import worse_permutation
from leafwatch.simulate.worse_model import write_worse_model


def test_the_worse_model_reports_swapped_classes_with_the_same_confidence(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "models", "leaves")
    registry.ensure_seeded()
    good = registry.production()
    path, card = write_worse_model(good, tmp_path / "worse")
    assert (tmp_path / "worse" / "reference.npz").is_file()
    assert card["simulated_worse_model_of"] == good.version
    assert "metrics" not in card  # the good model's held-out figures are not this one's
    good_model = OnnxClassifier(good.model_path, good.card, version="1")
    worse_model = OnnxClassifier(path, card, version="2")
    order = worse_permutation()
    for class_id in range(7):
        image = render_leaf(class_id, seed=3, index=class_id)
        before, after = good_model.predict(image), worse_model.predict(image)
        assert np.allclose(after.probabilities, before.probabilities[order])
        assert after.confidence == before.confidence
        assert np.array_equal(after.embedding, before.embedding)
        assert order[after.class_id] == before.class_id
