"""`leafwatch train --mlflow`: logged, registered, promoted, served and rolled back in MLflow."""

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from leafwatch.app import create_app
from leafwatch.cli import app
from leafwatch.config import Settings
from leafwatch.model.registry import bundled_model, open_registry
from tests.api.test_metrics import predict
from tests.conftest import image_bytes

mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.train

runner = CliRunner()
NAME = "banana_sigatoka_detector"
TINY = ["--per-class", "4", "--epochs", "2", "--input-size", "32"]


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # MLflow puts a new experiment's artifacts under ./mlruns: keep them in the test's folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEAFWATCH_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LEAFWATCH_MODEL_URI", f"models:/{NAME}@production")
    monkeypatch.setenv("LEAFWATCH_MLFLOW_TRACKING_URI", uri)
    return uri


def test_train_register_promote_serve_and_roll_back_in_mlflow(tracking_uri: str) -> None:
    pytest.importorskip("torch")
    result = runner.invoke(app, ["train", "--mlflow", "--promote", *TINY])
    assert result.exit_code == 0, result.output
    assert f"registered {NAME} version 1" in result.output
    assert "version 1 is now in production" in result.output

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    production = client.get_model_version_by_alias(NAME, "production")
    assert str(production.version) == "1"
    assert production.run_id in result.output
    run = client.get_run(production.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2"
    assert run.data.params["input_size"] == "32"
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    assert "heldout_accuracy" in run.data.metrics
    names = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert {"card.json", "confusion_matrix.png", "model"} <= names
    model_files = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "model")}
    assert "model/model.onnx" in model_files

    # A second version (the bundled model), promoted by hand, then served and rolled back.
    registry = open_registry(Settings())
    path, card = bundled_model()
    assert registry.register(path, card).version == "2"
    promoted = runner.invoke(app, ["model", "promote", "2"])
    assert promoted.exit_code == 0, promoted.output
    settings = Settings(admin_token="mlflow-admin", model_poll_seconds=0)
    admin = {"Authorization": "Bearer mlflow-admin"}
    with TestClient(create_app(settings)) as service:
        assert predict(service, image_bytes())["model_version"] == "2"
        rolled = runner.invoke(app, ["model", "rollback"])
        assert rolled.exit_code == 0, rolled.output
        assert "rolled back from version 2 to 1" in " ".join(rolled.output.split())
        reloaded = service.post("/api/v1/admin/model/reload", headers=admin).json()
        assert reloaded == {"model_version": "1", "changed": True}
        answer = predict(service, image_bytes())
        assert answer["model_version"] == "1", "the trained tiny model serves again"
        assert service.get("/model/info").json()["input_size"] == 32


def test_train_mlflow_without_an_mlflow_model_uri_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEAFWATCH_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("LEAFWATCH_MODEL_URI", raising=False)
    result = runner.invoke(app, ["train", "--mlflow", *TINY])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "LEAFWATCH_MODEL_URI=models:/NAME@production" in output
    assert "LEAFWATCH_MLFLOW_TRACKING_URI" in output
    assert not (tmp_path / "mlruns").exists()


def test_train_mlflow_without_mlflow_installed_names_the_extra(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "mlflow", None)
    result = runner.invoke(app, ["train", "--mlflow", *TINY])
    assert result.exit_code == 1
    assert "pip install 'leafwatch[mlflow]'" in " ".join(result.output.split())
