"""What the running service does by itself: the hourly image retention job."""

import os
import time
from pathlib import Path

from fastapi.testclient import TestClient

from leafwatch.app import create_app
from leafwatch.config import Settings
from tests.conftest import image_bytes
from tests.scrape import total
from tests.servers import eventually


def test_the_retention_job_deletes_old_images_counts_them_and_keeps_the_rows(
    settings: Settings,
) -> None:
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/api/v1/predict",
            files={"file": ("leaf.png", image_bytes("PNG", (40, 30)), "image/png")},
            data={"user_id": "farmer-1"},
        )
        prediction_id = answer.json()["prediction_id"]
        sha256 = client.get(f"/api/v1/predictions/{prediction_id}").json()["image_hash"]
    (path,) = settings.resolved_image_dir().glob(f"{sha256[:2]}/{sha256[2:4]}/{sha256}.*")
    forty_days_ago = time.time() - 40 * 86400
    os.utime(path, (forty_days_ago, forty_days_ago))

    # The job runs as the service starts, then hourly, once across all workers.
    with_retention = Settings(**(settings.model_dump() | {"image_retention_days": 30}))
    with TestClient(create_app(with_retention)) as client:
        assert eventually(lambda: not path.exists(), timeout=10)
        assert eventually(lambda: total(client.get("/metrics").text, "images_deleted_total") == 1)
        record = client.get(f"/api/v1/predictions/{prediction_id}")
        assert record.status_code == 200
        assert record.json()["image_hash"] == sha256


def test_without_a_retention_period_no_image_is_deleted(settings: Settings) -> None:
    assert settings.image_retention_days == 0
    store: Path = settings.resolved_image_dir()
    store.mkdir(parents=True)
    ancient = store / "ab" / "cd" / ("abcd" + "0" * 60 + ".jpg")
    ancient.parent.mkdir(parents=True)
    ancient.write_bytes(b"a leaf from long ago")
    os.utime(ancient, (0, 0))
    with TestClient(create_app(settings)) as client:
        assert client.get("/ready").status_code == 200
        assert total(client.get("/metrics").text, "images_deleted_total") == 0
    assert ancient.exists()


def test_the_database_pool_is_sized_by_the_settings(tmp_path: Path, postgres_database: str) -> None:
    settings = Settings(
        var_dir=tmp_path / "var",
        database_url=postgres_database,
        migrate_on_start=True,
        database_pool_size=2,
        database_max_overflow=0,
    )
    with TestClient(create_app(settings)) as client:
        pool = client.app.state.runtime.engine.pool
        assert pool.size() == 2
        assert client.get("/ready").json()["status"] == "ready"
