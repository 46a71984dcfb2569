"""The content-addressed image store."""

import hashlib
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
