"""The content-addressed image store, and deleting images past their retention."""

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leafwatch.storage.images import LocalImageStore


def test_images_are_stored_by_content_and_read_back(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalImageStore(root)
    stored = store.put(b"leaf bytes", extension=".JPG")
    digest = hashlib.sha256(b"leaf bytes").hexdigest()
    assert stored.sha256 == digest
    assert stored.path == f"{digest[:2]}/{digest[2:4]}/{digest}.jpg"
    assert store.get(stored.path) == b"leaf bytes"
    assert store.put(b"leaf bytes", extension="jpg") == stored
    assert [p for p in root.rglob("*") if p.is_file()] == [root / stored.path]


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("no")
    store = LocalImageStore(tmp_path / "images")
    with pytest.raises(FileNotFoundError):
        store.get("../secret")


def test_a_staged_image_is_invisible_until_committed_and_gone_when_discarded(
    tmp_path: Path,
) -> None:
    store = LocalImageStore(tmp_path / "store")
    kept = store.stage(b"valid leaf")
    dropped = store.stage(b"refused upload")
    assert list((tmp_path / "store").rglob("*.jpg")) == []
    stored = kept.commit(extension="jpg")
    dropped.discard()
    assert store.get(stored.path) == b"valid leaf"
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert files == [tmp_path / "store" / stored.path]


def age(path: Path, days: float) -> None:
    """Make a file look as if it was last written `days` ago."""
    moment = time.time() - days * 86400
    os.utime(path, (moment, moment))


def test_pruning_deletes_the_images_stored_before_the_cutoff_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    store = LocalImageStore(tmp_path / "store")
    old = store.put(b"an old leaf", extension="jpg")
    new = store.put(b"a new leaf", extension="png")
    age(store.root / old.path, days=40)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    assert store.prune(stored_before=cutoff, dry_run=True) == 1
    assert (store.root / old.path).exists()  # a dry run deletes nothing
    assert store.prune(stored_before=cutoff) == 1
    with pytest.raises(FileNotFoundError):
        store.get(old.path)
    assert store.get(new.path) == b"a new leaf"
    assert store.prune(stored_before=cutoff) == 0
    assert [p for p in store.root.rglob("*") if p.is_file()] == [store.root / new.path]


def test_an_image_uploaded_again_counts_from_its_latest_upload(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "store")
    first = store.put(b"the same leaf", extension="jpg")
    age(store.root / first.path, days=40)
    assert store.put(b"the same leaf", extension="jpg") == first
    assert store.prune(stored_before=datetime.now(UTC) - timedelta(days=30)) == 0
    assert store.get(first.path) == b"the same leaf"


def test_pruning_also_deletes_what_a_crash_left_staged(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "store")
    left = store.stage(b"staged, then the process died")
    fresh = store.stage(b"being validated right now")
    age(left.temp, days=2)
    assert store.prune(stored_before=datetime.now(UTC) - timedelta(days=1)) == 0
    assert not left.temp.exists()
    assert fresh.temp.exists()


def test_pruning_an_empty_or_missing_store_deletes_nothing(tmp_path: Path) -> None:
    assert LocalImageStore(tmp_path / "nowhere").prune(stored_before=datetime.now(UTC)) == 0
    assert not (tmp_path / "nowhere").exists()
