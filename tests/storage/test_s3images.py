"""Images on S3-compatible storage, against a real `rclone serve s3`: the API, the copy, failures.

The store's protocol tests (round trip, staging, retention) run on both stores in test_images.py.
"""

import contextlib
import socket
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from structlog.typing import EventDict
from typer.testing import CliRunner

from leafwatch.app import create_app
from leafwatch.cli import app as cli
from leafwatch.config import Settings
from leafwatch.errors import ImageStoreUnavailable
from leafwatch.stack import free_port
from leafwatch.storage.images import LocalImageStore, open_image_store
from leafwatch.storage.s3images import S3ImageStore, S3Location, s3_client
from tests.api.test_predict import count_predictions
from tests.cli.test_images import predict
from tests.conftest import image_bytes
from tests.s3 import REGION, Backed, S3Server, rclone_s3

runner = CliRunner()


def test_an_s3_url_names_a_bucket_and_a_prefix() -> None:
    assert S3Location.parse("s3://leaves/images/") == S3Location("leaves", "images/")
    assert S3Location.parse("s3://leaves/a/b") == S3Location("leaves", "a/b/")
    assert S3Location.parse("s3://leaves") == S3Location("leaves", "")
    assert str(S3Location.parse("s3://leaves/images")) == "s3://leaves/images/"
    for wrong in ("leaves/images", "https://leaves/images", "s3:///images", "s3://"):
        with pytest.raises(ValueError, match="s3://BUCKET"):
            S3Location.parse(wrong)
        with pytest.raises(ValueError, match="s3://BUCKET"):
            Settings(image_store_url=wrong)
    assert Settings(image_store_url="").image_store_url is None  # a blank variable is unset


def s3_store(settings: Settings) -> S3ImageStore:
    store = open_image_store(settings)
    assert isinstance(store, S3ImageStore)
    return store


def test_pruning_deletes_in_batches_and_leaves_what_is_not_an_image_key(
    s3_server: S3Server, s3_settings: Settings, s3_bucket: str
) -> None:
    store = s3_store(s3_settings)
    store.delete_batch = 2  # five old images: three DeleteObjects calls
    whole = Backed(store, s3_server.root / s3_bucket, bucket=(s3_server.client(), s3_bucket, ""))
    old = [store.put(f"old leaf {n}".encode(), extension="jpg") for n in range(5)]
    new = store.put(b"a new leaf", extension="webp")
    # Not the store's, old as they are: another prefix, and a file under its prefix but no key.
    foreign = ["other/ab/cd/notes.txt", "images/README.txt"]
    for key in foreign:
        s3_server.client().put_object(Bucket=s3_bucket, Key=key, Body=b"keep")
    for key in [*foreign, *(f"images/{image.path}" for image in old)]:
        whole.age(key, days=40)
    cutoff = datetime.now(UTC) - timedelta(days=30)

    assert store.prune(stored_before=cutoff, dry_run=True) == 5
    assert len(whole.listing()) == 8  # a dry run deletes nothing
    assert store.prune(stored_before=cutoff) == 5
    assert whole.listing() == sorted(whole.files / key for key in [*foreign, f"images/{new.path}"])
    assert store.get(new.path) == b"a new leaf"


def test_a_stored_object_carries_its_image_type(s3_settings: Settings, s3_server: S3Server) -> None:
    store = s3_store(s3_settings)
    stored = store.put(image_bytes("PNG", (8, 8)), extension="png")
    head = s3_server.client().head_object(
        Bucket=store.location.bucket, Key=store.location.prefix + stored.path
    )
    assert head["ContentType"] == "image/png"


def test_an_unreachable_endpoint_is_image_store_unavailable(
    s3_settings: Settings, log_events: Callable[[], list[EventDict]]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = s3_settings.model_copy(update={"s3_endpoint_url": nowhere, "s3_max_attempts": 1})
    with pytest.raises(ImageStoreUnavailable, match="LEAFWATCH_S3_ENDPOINT_URL"):
        open_image_store(settings)
    # A store whose S3 stops answering after the start: writes, reads and listings all fail
    # the same clear way (never FileNotFoundError, which would say the image is gone).
    store = S3ImageStore(s3_client(settings), S3Location.parse(str(settings.image_store_url)))
    bucket = str(store.location)
    with pytest.raises(ImageStoreUnavailable, match="could not be stored") as raised:
        store.put(b"a leaf", extension="jpg")
    assert f"the image bucket {bucket} could not take" in raised.value.reason
    assert bucket not in raised.value.detail  # a client is not told the bucket; the logs are
    failure = next(event for event in log_events() if event["event"] == "image bucket failed")
    assert failure["store"] == bucket
    assert "Could not connect" in failure["error"]
    digest = "ab" * 32
    with pytest.raises(ImageStoreUnavailable, match="could not be read") as raised:
        store.get(f"ab/ab/{digest}.jpg")
    assert f"could not give ab/ab/{digest}.jpg" in raised.value.reason
    with pytest.raises(ImageStoreUnavailable, match="could not be listed") as raised:
        store.prune(stored_before=datetime.now(UTC))
    assert f"the image bucket {bucket} could not list" in raised.value.reason


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An endpoint that accepts connections and never answers: a hung S3."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.slow
@pytest.mark.timeout(60)  # botocore's own read timeout is 60 s, retried: this fails without ours
def test_an_s3_that_never_answers_fails_the_write_instead_of_holding_it(
    s3_settings: Settings, silent_server: str
) -> None:
    settings = s3_settings.model_copy(
        update={"s3_endpoint_url": silent_server, "s3_timeout_seconds": 0.5, "s3_max_attempts": 2}
    )
    store = S3ImageStore(s3_client(settings), S3Location.parse(str(settings.image_store_url)))
    with pytest.raises(ImageStoreUnavailable) as raised:
        store.put(b"a leaf", extension="jpg")
    assert "timeout" in raised.value.reason
    assert type(raised.value.__cause__).__name__ == "ReadTimeoutError"


def test_a_missing_bucket_stops_the_start_and_says_which(
    s3_settings: Settings, tmp_path: Path
) -> None:
    settings = s3_settings.model_copy(
        update={
            "image_store_url": "s3://no-such-bucket-here/images",
            "database_url": f"sqlite:///{tmp_path / 'leafwatch.db'}",
        }
    )
    with (
        pytest.raises(ImageStoreUnavailable, match="s3://no-such-bucket-here/images/"),
        TestClient(create_app(settings)),
    ):
        pass


def test_without_boto3_the_start_names_the_extra_to_install(
    s3_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without [s3] has
    with pytest.raises(ImageStoreUnavailable, match=r"pip install 'leafwatch\[s3\]'"):
        open_image_store(s3_settings)


def with_sqlite(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'leafwatch.db'}", "migrate_on_start": True}
    )


def test_a_prediction_stores_its_image_in_the_bucket(
    s3_settings: Settings, s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    settings = with_sqlite(s3_settings, tmp_path)
    data = image_bytes("PNG", (40, 30))
    with TestClient(create_app(settings)) as client:
        digest = predict(client, data)["hash"]
        key = f"{digest[:2]}/{digest[2:4]}/{digest}.png"
    assert (s3_server.root / s3_bucket / "images" / key).read_bytes() == data
    assert s3_store(settings).get(key) == data
    assert not settings.resolved_image_dir().exists()  # nothing went to the local directory


def test_when_the_bucket_goes_away_a_prediction_is_refused_with_503_then_served_again(
    s3_settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    root, log = tmp_path / "outage-buckets", tmp_path / "rclone-outage.log"
    endpoint = f"http://127.0.0.1:{port}"
    settings = with_sqlite(s3_settings, tmp_path).model_copy(
        update={"s3_endpoint_url": endpoint, "s3_max_attempts": 2}
    )
    with contextlib.ExitStack() as stack:
        with rclone_s3(root, log=log, port=port) as server:
            bucket = S3Location.parse(str(settings.image_store_url)).bucket
            server.client().create_bucket(Bucket=bucket)
            client = stack.enter_context(TestClient(create_app(settings)))
        # The server has stopped: the upload cannot be stored, so nothing is recorded.
        answer = client.post(
            "/api/v1/predict",
            files={"file": ("leaf.png", image_bytes("PNG", (40, 30)), "image/png")},
            data={"user_id": "farmer-1"},
        )
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["error"] == "image_store_unavailable"
        assert body["detail"] == "the image could not be stored; try again later"
        assert "Traceback" not in answer.text
        assert count_predictions(settings) == 0
        # Readiness stays 200: an S3 outage is every replica's at once (docs/images.md).
        assert client.get("/ready").status_code == 200
        # Back on the same address: served again, without a restart.
        with rclone_s3(root, log=log, port=port):
            record = predict(client, image_bytes("PNG", (30, 40)))
        assert count_predictions(settings) == 1
        digest = record["hash"]
        assert (root / bucket / "images" / digest[:2] / digest[2:4] / f"{digest}.png").exists()


def test_a_local_store_that_cannot_write_answers_the_same_503(tmp_path: Path) -> None:
    blocked = tmp_path / "images"
    blocked.write_text("a file where the image directory should be")
    settings = Settings(
        var_dir=tmp_path / "var",
        image_dir=blocked,
        database_url=f"sqlite:///{tmp_path / 'leafwatch.db'}",
        migrate_on_start=True,
    )
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/api/v1/predict",
            files={"file": ("leaf.png", image_bytes("PNG", (40, 30)), "image/png")},
            data={"user_id": "farmer-1"},
        )
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "image_store_unavailable"
    assert answer.json()["detail"] == "the image could not be stored; try again later"
    assert count_predictions(settings) == 0


@pytest.fixture
def s3_environment(
    s3_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> LocalImageStore:
    """The CLI's environment: the test's bucket settings, and a local store to move from."""
    local = LocalImageStore(tmp_path / "local-images")
    monkeypatch.setenv("LEAFWATCH_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("LEAFWATCH_IMAGE_DIR", str(local.root))
    monkeypatch.setenv("LEAFWATCH_S3_ENDPOINT_URL", str(s3_settings.s3_endpoint_url))
    monkeypatch.setenv("LEAFWATCH_S3_REGION", REGION)
    monkeypatch.delenv("LEAFWATCH_IMAGE_STORE_URL", raising=False)
    return local


def test_copy_moves_a_local_stores_images_and_a_second_run_copies_nothing(
    s3_environment: LocalImageStore,
    s3_settings: Settings,
    s3_server: S3Server,
    s3_bucket: str,
) -> None:
    local = s3_environment
    stored = [
        local.put(image_bytes("JPEG", (32, 24)), extension="jpg"),
        local.put(image_bytes("PNG", (24, 32)), extension="png"),
        local.put(image_bytes("WEBP", (20, 20)), extension="webp"),
        local.put(image_bytes("PNG", (50, 10)), extension="png"),
    ]
    local.stage(b"an upload being validated")  # staged files are not images yet: not copied
    client = s3_server.client()
    # One already there (an earlier, interrupted run), one there with the wrong size (damaged).
    there, damaged = stored[0], stored[1]
    client.put_object(Bucket=s3_bucket, Key=f"images/{there.path}", Body=local.get(there.path))
    client.put_object(Bucket=s3_bucket, Key=f"images/{damaged.path}", Body=b"half")
    url = str(s3_settings.image_store_url)

    first = runner.invoke(cli, ["images", "copy", "--to", url, "--jobs", "2"])
    assert first.exit_code == 0, first.output
    assert "copied 3, already there 1, gone meanwhile 0 of 4 images" in first.output
    bucket = s3_server.root / s3_bucket / "images"
    assert sorted(p.relative_to(bucket).as_posix() for p in bucket.rglob("*") if p.is_file()) == (
        sorted(image.path for image in stored)
    )
    for image in stored:
        assert (bucket / image.path).read_bytes() == (local.root / image.path).read_bytes()

    second = runner.invoke(cli, ["images", "copy", "--to", url])
    assert second.exit_code == 0, second.output
    assert "copied 0, already there 4" in second.output

    # Then the switch: the service's store reads every image the local one had.
    switched = s3_store(s3_settings)
    for image in stored:
        assert switched.get(image.path) == local.get(image.path)


def test_copy_refuses_without_a_bucket_or_with_a_wrong_url(
    s3_environment: LocalImageStore,
) -> None:
    missing = runner.invoke(cli, ["images", "copy"])
    assert missing.exit_code == 2
    assert "--to s3://BUCKET/PREFIX" in missing.output
    wrong = runner.invoke(cli, ["images", "copy", "--to", "/mnt/images"])
    assert wrong.exit_code == 2
    assert "is not s3://BUCKET" in wrong.output


def test_copy_to_a_bucket_that_does_not_answer_fails_and_says_so(
    s3_environment: LocalImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_environment.put(b"a leaf", extension="jpg")
    monkeypatch.setenv("LEAFWATCH_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LEAFWATCH_S3_MAX_ATTEMPTS", "1")
    result = runner.invoke(cli, ["images", "copy", "--to", "s3://leaves/images"])
    assert result.exit_code == 1
    assert "cannot be used" in result.output
    assert "run the same command again" in result.output


def test_prune_from_the_command_line_deletes_from_the_bucket(
    s3_environment: LocalImageStore,
    s3_settings: Settings,
    s3_server: S3Server,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = s3_store(s3_settings)
    old = store.put(b"an old leaf", extension="jpg")
    new = store.put(b"a new leaf", extension="jpg")
    backed = Backed(
        store, s3_server.root / s3_bucket / "images", (s3_server.client(), s3_bucket, "images/")
    )
    backed.age(old.path, days=40)
    monkeypatch.setenv("LEAFWATCH_IMAGE_STORE_URL", str(s3_settings.image_store_url))

    dry = runner.invoke(cli, ["images", "prune", "--days", "30", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would delete 1 images older than 30 days from {s3_settings.image_store_url}" in (
        dry.output
    )
    result = runner.invoke(cli, ["images", "prune", "--days", "30"])
    assert result.exit_code == 0, result.output
    assert "deleted 1 images" in result.output
    assert backed.listing() == [backed.files / new.path]
