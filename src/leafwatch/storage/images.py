"""Content-addressed image store: an image's path is its SHA-256, so a re-upload costs a rename.

Images are user data: `prune` deletes those not uploaded again since a moment (the retention
period); prediction rows keep the hash of theirs. The keys are the same in every store (a local
directory here, an S3 bucket in s3images.py), so moving a store is a copy.
"""

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from leafwatch.errors import ImageStoreUnavailable

if TYPE_CHECKING:
    from leafwatch.config import Settings

log = structlog.stdlib.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class StoredImage:
    """Where an image was stored, and its hash."""

    path: str
    sha256: str


def image_key(sha256: str, extension: str) -> str:
    """The key of an image in every store: `<h[:2]>/<h[2:4]>/<h>.<ext>`."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.{extension.lower().lstrip('.')}"


class StagedImage(Protocol):
    """Bytes written aside and hashed, not yet visible in the store."""

    sha256: str

    def commit(self, *, extension: str) -> StoredImage:
        """Make the image visible under its content key; raises ImageStoreUnavailable."""
        ...

    def discard(self) -> None:
        """Drop the staged bytes (the upload was refused)."""
        ...


class ImageStore(Protocol):
    """Stores uploaded images by content."""

    def stage(self, data: bytes) -> StagedImage:
        """Hash and keep the bytes aside, so the work overlaps with validating them."""
        ...

    def put(self, data: bytes, *, extension: str) -> StoredImage:
        """Store the bytes and return their key; the same bytes again only refresh its time."""
        ...

    def get(self, path: str) -> bytes:
        """Return the bytes stored under `path`, raising FileNotFoundError if absent."""
        ...

    def prune(self, *, stored_before: datetime, dry_run: bool = False) -> int:
        """Delete images last stored before a moment; returns how many (would be) deleted."""
        ...


@dataclass(slots=True)
class _LocalStagedImage:
    root: Path
    temp: Path
    sha256: str

    def commit(self, *, extension: str) -> StoredImage:
        key = image_key(self.sha256, extension)
        target = self.root / key
        try:
            if not target.parent.is_dir():  # one stat instead of three failing mkdirs
                target.parent.mkdir(parents=True, exist_ok=True)
            # A rename: readers never see half a file, and a crash leaves no half-written key.
            # Over an existing copy too: its time becomes this upload's, which retention counts
            # from.
            os.replace(self.temp, target)
        except OSError as exc:
            raise _unavailable(self.root, exc) from exc
        return StoredImage(path=key, sha256=self.sha256)

    def discard(self) -> None:
        self.temp.unlink(missing_ok=True)


class LocalImageStore:
    """An ImageStore in a local directory: `<root>/<h[:2]>/<h[2:4]>/<h>.<ext>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def staging(self) -> Path:
        """Where uploads are written before they are committed (or discarded)."""
        return self.root / ".staging"

    def stage(self, data: bytes) -> StagedImage:
        """Write the bytes to a temporary file in the store and hash them."""
        staging = self.staging
        try:
            staging.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=staging)
        except OSError as exc:
            raise _unavailable(self.root, exc) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except BaseException as exc:
            Path(temp).unlink(missing_ok=True)
            if isinstance(exc, OSError):  # a full disk, a failing volume
                raise _unavailable(self.root, exc) from exc
            raise
        return _LocalStagedImage(
            root=self.root, temp=Path(temp), sha256=hashlib.sha256(data).hexdigest()
        )

    def put(self, data: bytes, *, extension: str) -> StoredImage:
        """Store the image; storing the same content again only refreshes its time."""
        return self.stage(data).commit(extension=extension)

    def get(self, path: str) -> bytes:
        """Read an image back; refuses keys that would leave the store."""
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise FileNotFoundError(path)
        return target.read_bytes()

    def prune(self, *, stored_before: datetime, dry_run: bool = False) -> int:
        """Delete images last stored before `stored_before`, and staged files a crash left.

        The directories stay: a commit may be about to write into one.
        """
        cutoff = stored_before.timestamp()
        deleted = 0
        if not dry_run and self.root.is_dir():
            self.staging.mkdir(exist_ok=True)
        for path in self._images():
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
                if not dry_run:
                    # Moved aside first: an upload of the same image in between replaces the
                    # file, and that fresh copy must stay. A rename keeps the time it had.
                    aside = self.staging / f"pruning-{path.name}"
                    os.replace(path, aside)
                    if aside.stat().st_mtime >= cutoff:
                        os.replace(aside, path)
                        continue
                    aside.unlink()
                deleted += 1
            except FileNotFoundError:
                continue  # gone meanwhile: pruned by another process
        for path in self._leftovers():
            try:
                if path.stat().st_mtime < cutoff and not dry_run:
                    path.unlink()
            except FileNotFoundError:
                continue
        return deleted

    def image_keys(self, *, under: str = "") -> Iterator[str]:
        """The keys of the stored images, lazily; `under` narrows them to a first level (`ab/`)."""
        root = self.root
        for path in self._images(under.strip("/") or "[0-9a-f][0-9a-f]"):
            yield path.relative_to(root).as_posix()

    def _images(self, first: str = "[0-9a-f][0-9a-f]") -> Iterator[Path]:
        # Lazily, a directory at a time: a store may hold millions.
        if self.root.is_dir():
            yield from self.root.glob(f"{first}/[0-9a-f][0-9a-f]/*")

    def _leftovers(self) -> list[Path]:
        return list(self.staging.iterdir()) if self.staging.is_dir() else []


def _unavailable(root: Path, exc: OSError) -> ImageStoreUnavailable:
    log.error("image store write failed", store=str(root), error=str(exc))
    # The client is told what happened, not the server's paths.
    return ImageStoreUnavailable(
        "the image could not be stored; try again later",
        reason=f"the image store {root} could not take the image: {exc}",
    )


def open_image_store(settings: "Settings") -> ImageStore:
    """The store the settings name: an S3 bucket for an s3:// URL, else the local directory.

    A bucket is checked at once: a process that cannot store images should not start.
    """
    if settings.image_store_url:
        from leafwatch.storage.s3images import open_s3_store

        return open_s3_store(settings.image_store_url, settings)
    return LocalImageStore(settings.resolved_image_dir())
