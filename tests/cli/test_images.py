"""`leafwatch images prune`: images past the retention go, prediction rows and their hash stay."""

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from leafwatch.app import create_app
from leafwatch.cli import app
from leafwatch.config import Settings
from tests.conftest import image_bytes

runner = CliRunner()


def predict(client: TestClient, data: bytes) -> dict[str, str]:
    answer = client.post(
        "/api/v1/predict",
        files={"file": ("leaf.png", data, "image/png")},
        data={"user_id": "farmer-1"},
    )
    assert answer.status_code == 200, answer.text
    record = client.get(f"/api/v1/predictions/{answer.json()['prediction_id']}").json()
    return {"id": record["prediction_id"], "hash": record["image_hash"]}


def stored_file(settings: Settings, sha256: str) -> Path:
    (path,) = settings.resolved_image_dir().glob(f"{sha256[:2]}/{sha256[2:4]}/{sha256}.*")
    return path


def test_prune_deletes_old_images_and_their_predictions_keep_answering(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAFWATCH_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("LEAFWATCH_DATABASE_URL", settings.resolved_database_url())
    with TestClient(create_app(settings)) as client:
        old = predict(client, image_bytes("PNG", (40, 30)))
        new = predict(client, image_bytes("PNG", (30, 40)))
        forty_days_ago = time.time() - 40 * 86400
        os.utime(stored_file(settings, old["hash"]), (forty_days_ago, forty_days_ago))

        dry = runner.invoke(app, ["images", "prune", "--days", "30", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "would delete 1 images" in dry.output
        assert stored_file(settings, old["hash"]).exists()

        result = runner.invoke(app, ["images", "prune", "--days", "30"])
        assert result.exit_code == 0, result.output
        assert "deleted 1 images" in result.output
        assert not list(settings.resolved_image_dir().rglob(f"{old['hash']}.*"))
        assert stored_file(settings, new["hash"]).exists()

        # The row stays, with the hash of the image it was made from.
        record = client.get(f"/api/v1/predictions/{old['id']}")
        assert record.status_code == 200
        assert record.json()["image_hash"] == old["hash"]


def test_prune_without_a_retention_period_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAFWATCH_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("LEAFWATCH_IMAGE_RETENTION_DAYS", raising=False)
    result = runner.invoke(app, ["images", "prune"])
    assert result.exit_code == 2
    assert "LEAFWATCH_IMAGE_RETENTION_DAYS" in result.output
    monkeypatch.setenv("LEAFWATCH_IMAGE_RETENTION_DAYS", "7")
    assert runner.invoke(app, ["images", "prune"]).exit_code == 0
