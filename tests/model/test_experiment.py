"""A tiny training run logged to a real local MLflow store: parameters, epochs, figures, files."""

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("torch")
mlflow = pytest.importorskip("mlflow")

import leafwatch  # noqa: E402
from leafwatch.model.experiment import (  # noqa: E402
    CARD_ARTIFACT,
    CONFUSION_ARTIFACT,
    VERSION_TAG,
    confusion_image,
    heldout_metrics,
    require_mlflow,
    training_params,
    training_run,
)
from leafwatch.model.labels import CLASS_NAMES  # noqa: E402
from leafwatch.model.train import train_model  # noqa: E402

pytestmark = pytest.mark.train

EPOCHS = 2
PARAMS = {"seed": 5, "per_class": 4, "epochs": EPOCHS, "input_size": 32}


class LoggedRun:
    """A finished tiny run: its id, the card training returned, and a client on its store."""

    def __init__(self, run_id: str, card: dict[str, Any], client: Any, artifacts: Path) -> None:
        self.run_id = run_id
        self.card = card
        self.client = client
        self.artifacts = artifacts
        self.uri_before: tuple[bool, str] = (False, "")
        self.uri_after: tuple[bool, str] = (False, "")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> LoggedRun:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    artifacts = root / "artifacts"
    uri_before = (mlflow.is_tracking_uri_set(), mlflow.get_tracking_uri())
    with training_run(
        PARAMS, tracking_uri=uri, experiment="tiny", artifact_location=artifacts.as_uri()
    ) as run:
        card = train_model(
            root / "model", reference_per_class=2, progress=False, on_epoch=run.log_epoch, **PARAMS
        )
        run.log_result(card)
    result = LoggedRun(run.run_id, card, mlflow.MlflowClient(tracking_uri=uri), artifacts)
    result.uri_before = uri_before
    result.uri_after = (mlflow.is_tracking_uri_set(), mlflow.get_tracking_uri())
    return result


def test_run_has_the_parameters_the_recipe_and_the_leafwatch_version(logged: LoggedRun) -> None:
    data = logged.client.get_run(logged.run_id).data
    for key, value in PARAMS.items():
        assert data.params[key] == str(value)
    assert data.params["training.batch_size"] == str(logged.card["training"]["batch_size"])
    assert data.params["training.torch_version"] == logged.card["training"]["torch_version"]
    assert "training.seconds" not in data.params
    assert data.tags[VERSION_TAG] == leafwatch.__version__


def test_every_epoch_logs_its_figures_at_its_step(logged: LoggedRun) -> None:
    for key in ("train_loss", "train_accuracy", "learning_rate"):
        history = logged.client.get_metric_history(logged.run_id, key)
        assert sorted(metric.step for metric in history) == list(range(1, EPOCHS + 1)), key
    losses = logged.client.get_metric_history(logged.run_id, "train_loss")
    assert all(metric.value > 0 for metric in losses)


def test_the_heldout_figures_are_logged_flat(logged: LoggedRun) -> None:
    logged_metrics = logged.client.get_run(logged.run_id).data.metrics
    card_metrics = logged.card["metrics"]
    for key in ("heldout_accuracy", "ece", "ece_before_calibration", "temperature"):
        assert logged_metrics[key] == pytest.approx(card_metrics[key])
    for name in CLASS_NAMES:
        assert logged_metrics[f"recall_{name}"] == pytest.approx(
            card_metrics["per_class_recall"][name]
        )
    assert not any("confusion" in key for key in logged_metrics)


def test_the_card_and_the_confusion_matrix_are_artifacts(logged: LoggedRun, tmp_path: Path) -> None:
    names = {artifact.path for artifact in logged.client.list_artifacts(logged.run_id)}
    assert {CARD_ARTIFACT, CONFUSION_ARTIFACT} <= names
    # The experiment's artifact location holds them, not the working directory's ./mlruns.
    assert list(logged.artifacts.rglob(CONFUSION_ARTIFACT))
    card_path = logged.client.download_artifacts(logged.run_id, CARD_ARTIFACT, str(tmp_path))
    assert json.loads(Path(card_path).read_text()) == logged.card
    png = logged.client.download_artifacts(logged.run_id, CONFUSION_ARTIFACT, str(tmp_path))
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.width > 7 * 40
        assert image.height > 7 * 40


def test_the_run_finishes_and_the_tracking_uri_is_put_back(logged: LoggedRun) -> None:
    assert logged.client.get_run(logged.run_id).info.status == "FINISHED"
    assert mlflow.active_run() is None
    assert logged.uri_after == logged.uri_before


def test_a_failing_block_marks_the_run_failed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with (
        pytest.raises(RuntimeError, match="boom"),
        training_run(PARAMS, tracking_uri=uri, artifact_location=tmp_path.as_uri()) as run,
    ):
        raise RuntimeError("boom")
    status = mlflow.MlflowClient(tracking_uri=uri).get_run(run.run_id).info.status
    assert status == "FAILED"


def test_heldout_metrics_keep_numbers_and_name_recalls_by_class() -> None:
    card = {
        "metrics": {
            "heldout_accuracy": 0.5,
            "heldout_size": 14,
            "per_class_recall": {"Healthy": 1.0, "Stage1": 0.0},
            "confusion_matrix": [[1, 0], [1, 0]],
        },
        "training": {"seconds": 2.5, "lr": 0.003},
    }
    assert heldout_metrics(card) == {
        "heldout_accuracy": 0.5,
        "heldout_size": 14.0,
        "recall_Healthy": 1.0,
        "recall_Stage1": 0.0,
        "training_seconds": 2.5,
    }
    assert training_params(card) == {"training.lr": 0.003}


def test_confusion_image_refuses_a_matrix_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="must be 2x2"):
        confusion_image([[1, 2, 3], [4, 5, 6]], ["a", "b"])


def test_confusion_image_shades_the_cells_a_class_lands_in() -> None:
    image = confusion_image([[5, 0], [0, 5]], ["a", "b"])
    assert isinstance(image, Image.Image)
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 16) or []}
    assert (24, 70, 140) in colours


def test_a_missing_mlflow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ImportError, match=r"pip install 'leafwatch\[mlflow\]'"):
        require_mlflow()
