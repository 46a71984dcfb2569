"""The local model registry: seeding from the bundled model, promotion and rollback."""

import json
import threading
from pathlib import Path

import pytest

from leafwatch.errors import ModelRegistryError
from leafwatch.model.registry import LocalModelRegistry, bundled_model


def make_version(folder: Path, marker: str) -> tuple[Path, dict[str, object]]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(marker.encode())
    return folder / "model.onnx", {"input_size": 128, "marker": marker}


def test_an_empty_registry_is_seeded_with_the_bundled_model_once(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path, "banana_sigatoka_detector")
    threads = [threading.Thread(target=registry.ensure_seeded) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [info.version for info in registry.versions()] == ["1"]
    production = registry.production()
    bundled_path, bundled_card = bundled_model()
    assert production.model_path.read_bytes() == bundled_path.read_bytes()
    assert production.card["version"] == "1"
    assert production.card["input_size"] == bundled_card["input_size"]
    reference = bundled_path.with_name("reference.npz")
    assert production.reference_path.read_bytes() == reference.read_bytes()


def test_a_models_drift_reference_is_registered_with_it(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "reg", "m")
    model_path, card = make_version(tmp_path / "with", "with")
    model_path.with_name("reference.npz").write_bytes(b"features")
    assert registry.register(model_path, card).reference_path.read_bytes() == b"features"
    without = registry.register(*make_version(tmp_path / "without", "without"))
    assert not without.reference_path.exists()


def test_promote_and_rollback_walk_the_history(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "reg", "m")
    for marker in ("a", "b", "c"):
        info = registry.register(*make_version(tmp_path / marker, marker))
        assert info.card["marker"] == marker
    assert [info.version for info in registry.versions()] == ["1", "2", "3"]
    with pytest.raises(ModelRegistryError, match="no production version"):
        registry.production()
    registry.promote("1")
    registry.promote("3")
    registry.promote("3")  # promoting the serving version again changes nothing
    assert registry.production().version == "3"
    assert registry.promotion_history() == ["1", "3"]
    assert registry.rollback() == ("3", "1")
    assert registry.production().card["marker"] == "a"
    with pytest.raises(ModelRegistryError, match="no earlier production version"):
        registry.rollback()
    with pytest.raises(ModelRegistryError, match="no version '9'"):
        registry.promote("9")


def test_a_rollback_expecting_a_version_acts_only_while_it_is_production(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "reg", "m")
    for marker in ("a", "b", "c"):
        registry.promote(registry.register(*make_version(tmp_path / marker, marker)).version)
    # An alert about version 2 arrives after someone promoted 3: 3 is not rolled back.
    with pytest.raises(ModelRegistryError, match="production is version 3, not 2"):
        registry.rollback(expected="2")
    assert registry.production().version == "3"
    assert registry.rollback(expected="3") == ("3", "2")


def test_a_registered_card_gets_name_version_and_time(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "reg", "m")
    info = registry.register(*make_version(tmp_path / "x", "x"))
    card = json.loads((info.model_path.parent / "card.json").read_text())
    assert card["name"] == "m"
    assert card["version"] == "1"
    assert card["registered_at"]
