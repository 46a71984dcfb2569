"""MLflow as the registry, for real: a local tracking store (SQLite) and artifact directory."""

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.errors import ModelRegistryError
from leafwatch.model.mlflow_registry import MlflowModelRegistry, parse_model_uri
from leafwatch.model.registry import bundled_model, open_registry
from tests.api.test_metrics import predict
from tests.conftest import image_bytes
from tests.scrape import total

NAME = "banana_sigatoka_detector"
ADMIN = {"Authorization": "Bearer mlflow-admin"}


@pytest.fixture
def mlflow_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings serving from a fresh local MLflow; artifacts land under tmp_path/mlruns."""
    monkeypatch.chdir(tmp_path)  # a SQLite store keeps artifacts in ./mlruns
    return Settings(
        var_dir=tmp_path / "var",
        model_uri=f"models:/{NAME}@production",
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        model_poll_seconds=0,
        admin_token="mlflow-admin",
    )


def registry_of(settings: Settings) -> MlflowModelRegistry:
    """The MLflow registry the settings open."""
    registry = open_registry(settings)
    assert isinstance(registry, MlflowModelRegistry)
    return registry


def register_bundled(registry: MlflowModelRegistry, times: int) -> list[str]:
    """Register the bundled model `times` times; returns the new versions."""
    path, card = bundled_model()
    return [registry.register(path, {**card, "note": f"copy {n}"}).version for n in range(times)]


def test_model_uris_name_an_alias_or_a_stage() -> None:
    assert parse_model_uri("models:/leaf@production") == ("leaf", "production", None)
    assert parse_model_uri("models:/leaf@champion") == ("leaf", "champion", None)
    assert parse_model_uri("models:/leaf/Production") == ("leaf", None, "Production")
    assert parse_model_uri("models:/leaf") == ("leaf", "production", None)
    with pytest.raises(ModelRegistryError, match="models:/NAME@ALIAS"):
        parse_model_uri("runs:/abc/model")


def test_versions_are_registered_promoted_and_rolled_back_in_mlflow(
    mlflow_settings: Settings,
) -> None:
    registry = registry_of(mlflow_settings)
    with pytest.raises(ModelRegistryError, match="leafwatch train --mlflow --promote"):
        registry.production()
    assert register_bundled(registry, 2) == ["1", "2"]
    registry.promote("1")
    served = registry.production()
    assert (served.version, served.card["version"], served.card["note"]) == ("1", "1", "copy 0")
    assert served.model_path.read_bytes() == bundled_model()[0].read_bytes()
    assert served.reference_path.is_file(), "the drift reference travels with the version"
    registry.promote("2")
    alias = registry.client.get_model_version_by_alias(NAME, "production")
    assert str(alias.version) == "2"  # the alias in MLflow itself, as the MLflow UI shows it
    assert registry.rollback() == ("2", "1")
    assert registry.production().version == "1"
    with pytest.raises(ModelRegistryError, match="no earlier production version"):
        registry.rollback()
    with pytest.raises(ModelRegistryError, match=r"no version '9' \(registered: 1, 2\)"):
        registry.promote("9")
    assert [info.version for info in registry.versions()] == ["1", "2"]


def test_a_stage_uri_uses_the_older_stages(mlflow_settings: Settings) -> None:
    settings = mlflow_settings.model_copy(update={"model_uri": f"models:/{NAME}/Production"})
    registry = registry_of(settings)
    register_bundled(registry, 2)
    registry.promote("2")
    assert registry.client.get_model_version(NAME, "2").current_stage == "Production"
    assert registry.production().version == "2"


def test_the_service_serves_mlflow_versions_and_switches_without_a_restart(
    mlflow_settings: Settings,
) -> None:
    registry = registry_of(mlflow_settings)
    register_bundled(registry, 2)
    registry.promote("1")
    with TestClient(create_app(mlflow_settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        first = predict(client, image_bytes())
        assert first["model_version"] == "1"
        in_flight = runtime.predictor()  # a request that started before the switch
        registry.promote("2")
        reloaded = client.post("/api/v1/admin/model/reload", headers=ADMIN)
        assert reloaded.json() == {"model_version": "2", "changed": True}
        assert client.post("/api/v1/admin/model/reload", headers=ADMIN).json()["changed"] is False
        second = predict(client, image_bytes())
        assert second["model_version"] == "2"
        assert (
            in_flight.predict(image_bytes(), user_id="u", user_location=None).row.model_version
            == "1"
        )
        text = client.get("/metrics").text
        assert total(text, "model_info", model_name=NAME, model_version="2") == 1
        assert total(text, "model_predictions_total", model_version="1") == 1
        assert client.post("/api/v1/admin/model/reload").status_code == 401
        registry.rollback()
        assert (
            client.post("/api/v1/admin/model/reload", headers=ADMIN).json()["model_version"] == "1"
        )


def test_the_service_polls_for_a_new_production_version(mlflow_settings: Settings) -> None:
    registry = registry_of(mlflow_settings)
    register_bundled(registry, 2)
    registry.promote("1")
    settings = mlflow_settings.model_copy(update={"model_poll_seconds": 0.3})
    with TestClient(create_app(settings)) as client:
        assert client.get("/model/info").json()["model_version"] == "1"
        registry.promote("2")
        deadline = time.monotonic() + 15
        while client.get("/model/info").json()["model_version"] != "2":
            assert time.monotonic() < deadline, "the poll did not pick up version 2"
            time.sleep(0.2)
