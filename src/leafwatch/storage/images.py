"""Content-addressed image store: an image's path is its SHA-256, so a re-upload costs nothing."""

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredImage:
    """Where an image was stored, and its hash."""

    path: str
    sha256: str


class StagedImage(Protocol):
    """Bytes written aside and hashed, not yet visible in the store."""

    sha256: str

    def commit(self, *, extension: str) -> StoredImage:
        """Make the image visible under its content key."""
        ...

    def discard(self) -> None:
        """Drop the staged bytes (the upload was refused)."""
        ...


class ImageStore(Protocol):
    """Stores uploaded images by content."""

    def stage(self, data: bytes) -> StagedImage:
        """Hash and write the bytes aside, so the work overlaps with validating them."""
        ...

    def put(self, data: bytes, *, extension: str) -> StoredImage:
        """Store the bytes and return their key; storing the same bytes twice is a no-op."""
        ...

    def get(self, path: str) -> bytes:
        """Return the bytes stored under `path`, raising FileNotFoundError if absent."""
        ...


@dataclass(slots=True)
class _LocalStagedImage:
    root: Path
    temp: Path
    sha256: str

    def commit(self, *, extension: str) -> StoredImage:
        digest = self.sha256
        key = f"{digest[:2]}/{digest[2:4]}/{digest}.{extension.lower().lstrip('.')}"
        target = self.root / key
        if target.exists():
            self.temp.unlink(missing_ok=True)
        else:
            if not target.parent.is_dir():  # one stat instead of three failing mkdirs
                target.parent.mkdir(parents=True, exist_ok=True)
            # A rename: readers never see half a file, and a crash leaves no half-written key.
            os.replace(self.temp, target)
        return StoredImage(path=key, sha256=digest)

    def discard(self) -> None:
        self.temp.unlink(missing_ok=True)


class LocalImageStore:
    """An ImageStore in a local directory: `<root>/<h[:2]>/<h[2:4]>/<h>.<ext>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def stage(self, data: bytes) -> StagedImage:
        """Write the bytes to a temporary file in the store and hash them."""
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=staging)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return _LocalStagedImage(
            root=self.root, temp=Path(temp), sha256=hashlib.sha256(data).hexdigest()
        )

    def put(self, data: bytes, *, extension: str) -> StoredImage:
        """Write the image unless the same content is already there."""
        return self.stage(data).commit(extension=extension)

    def get(self, path: str) -> bytes:
        """Read an image back; refuses keys that would leave the store."""
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise FileNotFoundError(path)
        return target.read_bytes()
