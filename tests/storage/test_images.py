"""The content-addressed image stores, and deleting images past their retention.

The protocol's tests run on both stores: a local directory, and an S3 bucket served by a real
`rclone serve s3` whose backing directory shows what the bucket holds.
"""

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leafwatch.storage.images import LocalImageStore, open_image_store
from tests.s3 import Backed, S3Server


@pytest.fixture(params=["local", "s3"])
def backed(request: pytest.FixtureRequest, tmp_path: Path) -> Backed:
    """Each store in turn, empty."""
    if request.param == "local":
        return Backed(LocalImageStore(tmp_path / "store"), tmp_path / "store")
    server: S3Server = request.getfixturevalue("s3_server")
    settings = request.getfixturevalue("s3_settings")
    bucket = request.getfixturevalue("s3_bucket")
    return Backed(
        open_image_store(settings),
        server.root / bucket / "images",
        bucket=(server.client(), bucket, "images/"),
    )


def test_images_are_stored_by_content_and_read_back(backed: Backed) -> None:
    store = backed.store
    stored = store.put(b"leaf bytes", extension=".JPG")
    digest = hashlib.sha256(b"leaf bytes").hexdigest()
    assert stored.sha256 == digest
    assert stored.path == f"{digest[:2]}/{digest[2:4]}/{digest}.jpg"
    assert store.get(stored.path) == b"leaf bytes"
    assert store.put(b"leaf bytes", extension="jpg") == stored
    assert backed.listing() == [backed.files / stored.path]


def test_a_missing_image_is_file_not_found(backed: Backed) -> None:
    digest = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(FileNotFoundError):
        backed.store.get(f"{digest[:2]}/{digest[2:4]}/{digest}.jpg")


def test_keys_cannot_escape_the_store(backed: Backed) -> None:
    backed.files.mkdir(parents=True, exist_ok=True)
    (backed.files.parent / "secret").write_text("no")
    with pytest.raises(FileNotFoundError):
        backed.store.get("../secret")


def test_a_staged_image_is_invisible_until_committed_and_gone_when_discarded(
    backed: Backed,
) -> None:
    store = backed.store
    kept = store.stage(b"valid leaf")
    dropped = store.stage(b"refused upload")
    assert list(backed.files.rglob("*.jpg")) == []
    stored = kept.commit(extension="jpg")
    dropped.discard()
    assert store.get(stored.path) == b"valid leaf"
    assert backed.listing() == [backed.files / stored.path]


def age(path: Path, days: float) -> None:
    """Make a file look as if it was last written `days` ago."""
    moment = time.time() - days * 86400
    os.utime(path, (moment, moment))


def test_pruning_deletes_the_images_stored_before_the_cutoff_and_keeps_the_rest(
    backed: Backed,
) -> None:
    store = backed.store
    old = store.put(b"an old leaf", extension="jpg")
    new = store.put(b"a new leaf", extension="png")
    backed.age(old.path, days=40)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    assert store.prune(stored_before=cutoff, dry_run=True) == 1
    assert (backed.files / old.path).exists()  # a dry run deletes nothing
    assert store.prune(stored_before=cutoff) == 1
    with pytest.raises(FileNotFoundError):
        store.get(old.path)
    assert store.get(new.path) == b"a new leaf"
    assert store.prune(stored_before=cutoff) == 0
    assert backed.listing() == [backed.files / new.path]


def test_an_image_uploaded_again_counts_from_its_latest_upload(backed: Backed) -> None:
    store = backed.store
    first = store.put(b"the same leaf", extension="jpg")
    backed.age(first.path, days=40)
    assert store.put(b"the same leaf", extension="jpg") == first
    assert store.prune(stored_before=datetime.now(UTC) - timedelta(days=30)) == 0
    assert store.get(first.path) == b"the same leaf"
    assert backed.listing() == [backed.files / first.path]  # one object, not two


def test_pruning_also_deletes_what_a_crash_left_staged(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "store")
    left = store.stage(b"staged, then the process died")
    fresh = store.stage(b"being validated right now")
    age(left.temp, days=2)
    assert store.prune(stored_before=datetime.now(UTC) - timedelta(days=1)) == 0
    assert not left.temp.exists()
    assert fresh.temp.exists()


def test_pruning_an_empty_store_deletes_nothing(backed: Backed) -> None:
    assert backed.store.prune(stored_before=datetime.now(UTC)) == 0
    assert backed.listing() == []


def test_pruning_a_missing_local_store_creates_nothing(tmp_path: Path) -> None:
    assert LocalImageStore(tmp_path / "nowhere").prune(stored_before=datetime.now(UTC)) == 0
    assert not (tmp_path / "nowhere").exists()
