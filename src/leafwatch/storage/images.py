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


class ImageStore(Protocol):
    """Stores uploaded images by content."""

    def put(self, data: bytes, *, extension: str) -> StoredImage:
        """Store the bytes and return their key; storing the same bytes twice is a no-op."""
        ...

    def get(self, path: str) -> bytes:
        """Return the bytes stored under `path`, raising FileNotFoundError if absent."""
        ...


class LocalImageStore:
    """An ImageStore in a local directory: `<root>/<h[:2]>/<h[2:4]>/<h>.<ext>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, data: bytes, *, extension: str) -> StoredImage:
        """Write the image atomically unless the same content is already there."""
        digest = hashlib.sha256(data).hexdigest()
        key = f"{digest[:2]}/{digest[2:4]}/{digest}.{extension.lower().lstrip('.')}"
        target = self.root / key
        if not target.exists():
            if not target.parent.is_dir():  # one stat instead of three failing mkdirs
                target.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees half a file, and a crash leaves no junk key.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return StoredImage(path=key, sha256=digest)

    def get(self, path: str) -> bytes:
        """Read an image back; refuses keys that would leave the store."""
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise FileNotFoundError(path)
        return target.read_bytes()
