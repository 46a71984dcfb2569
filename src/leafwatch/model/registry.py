"""Model registry: versions on disk and a `production` alias with its history, for rollback."""

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from leafwatch.errors import ModelRegistryError

if TYPE_CHECKING:
    from leafwatch.config import Settings

MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
# Feature statistics of the version's held-out data, for drift detection from its first hour.
REFERENCE_FILE = "reference.npz"
PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class ModelVersionInfo:
    """One registered version: where its files are, and its card."""

    name: str
    version: str
    model_path: Path
    card: dict[str, Any]

    @property
    def reference_path(self) -> Path:
        """Where the version's drift reference is (the file may not exist)."""
        return self.model_path.with_name(REFERENCE_FILE)


class ModelRegistry(Protocol):
    """Where model versions are kept and which one serves."""

    name: str

    def ensure_seeded(self) -> None:
        """Make sure there is something to serve on first use (the local registry's bundle)."""
        ...

    def versions(self) -> list[ModelVersionInfo]:
        """Every registered version, oldest first."""
        ...

    def register(self, model_path: Path, card: dict[str, Any]) -> ModelVersionInfo:
        """Add a version and return it (not promoted)."""
        ...

    def promote(self, version: str) -> None:
        """Make `version` the production version."""
        ...

    def rollback(self, *, expected: str | None = None) -> tuple[str, str]:
        """Point production back at the version before it; return (from, to).

        With `expected`, only while that version is production (checked with the change, so a
        promotion in between is never undone); raises ModelRegistryError otherwise.
        """
        ...

    def production(self) -> ModelVersionInfo:
        """The version that serves."""
        ...


def open_registry(settings: "Settings") -> ModelRegistry:
    """The registry the settings name: MLflow for a models:/ URI, else the local one."""
    if settings.model_uri:
        from leafwatch.model.mlflow_registry import MlflowModelRegistry

        return MlflowModelRegistry(
            settings.model_uri,
            tracking_uri=settings.mlflow_tracking_uri,
            cache_dir=settings.var_dir / "mlflow-models",
        )
    return LocalModelRegistry(settings.resolved_model_dir(), settings.model_name)


def bundled_model() -> tuple[Path, dict[str, Any]]:
    """The model shipped inside the package, so a fresh install serves without training."""
    folder = Path(str(resources.files("leafwatch.model") / "bundled"))
    card: dict[str, Any] = json.loads((folder / CARD_FILE).read_text())
    return folder / MODEL_FILE, card


class LocalModelRegistry:
    """A ModelRegistry in a directory: `<root>/<name>/versions/<n>/` and `aliases.json`."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.folder = root / name

    def ensure_seeded(self) -> None:
        """Register and promote the bundled model when the registry is empty."""
        with self._locked():
            if self._aliases().get(PRODUCTION):
                return
            if not self._version_dirs():
                model_path, card = bundled_model()
                self._register_unlocked(model_path, card)
            latest = self._version_dirs()[-1].name
            self._promote_unlocked(latest)

    def versions(self) -> list[ModelVersionInfo]:
        """Every registered version, oldest first."""
        return [self._info(path.name) for path in self._version_dirs()]

    def register(self, model_path: Path, card: dict[str, Any]) -> ModelVersionInfo:
        """Copy the model and its card in as the next version number."""
        with self._locked():
            return self._register_unlocked(model_path, card)

    def promote(self, version: str) -> None:
        """Make `version` the production version, remembering the one it replaces."""
        with self._locked():
            self._promote_unlocked(version)

    def rollback(self, *, expected: str | None = None) -> tuple[str, str]:
        """Point production back at the version promoted before the current one."""
        with self._locked():
            aliases = self._aliases()
            history: list[str] = aliases.get("history", [])
            check_expected(self.name, aliases.get(PRODUCTION), expected)
            if len(history) < 2:
                raise ModelRegistryError(
                    f"model {self.name!r} has no earlier production version to roll back to"
                )
            current, previous = history[-1], history[-2]
            aliases["history"] = history[:-1]
            aliases[PRODUCTION] = previous
            self._write_aliases(aliases)
            return current, previous

    def production(self) -> ModelVersionInfo:
        """The production version."""
        version = self._aliases().get(PRODUCTION)
        if not version:
            raise ModelRegistryError(f"model {self.name!r} has no production version")
        return self._info(version)

    def promotion_history(self) -> list[str]:
        """Versions promoted to production, oldest first, as rollback sees them."""
        return list(self._aliases().get("history", []))

    def _register_unlocked(self, model_path: Path, card: dict[str, Any]) -> ModelVersionInfo:
        numbers = [int(path.name) for path in self._version_dirs()]
        version = str(max(numbers, default=0) + 1)
        target = self.folder / "versions" / version
        staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=".staging-"))
        shutil.copyfile(model_path, staging / MODEL_FILE)
        reference = model_path.with_name(REFERENCE_FILE)
        if reference.is_file():
            shutil.copyfile(reference, staging / REFERENCE_FILE)
        stored_card = {**card, "name": self.name, "version": version}
        stored_card.setdefault("registered_at", datetime.now(UTC).isoformat())
        (staging / CARD_FILE).write_text(json.dumps(stored_card, indent=2) + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
        return self._info(version)

    def _promote_unlocked(self, version: str) -> None:
        if not (self.folder / "versions" / version / MODEL_FILE).is_file():
            known = ", ".join(path.name for path in self._version_dirs()) or "none"
            raise ModelRegistryError(
                f"model {self.name!r} has no version {version!r} (registered: {known})"
            )
        aliases = self._aliases()
        history: list[str] = aliases.get("history", [])
        if aliases.get(PRODUCTION) == version:
            return
        aliases[PRODUCTION] = version
        aliases["history"] = [*history, version]
        self._write_aliases(aliases)

    def _info(self, version: str) -> ModelVersionInfo:
        folder = self.folder / "versions" / version
        try:
            card: dict[str, Any] = json.loads((folder / CARD_FILE).read_text())
        except FileNotFoundError:
            raise ModelRegistryError(f"model {self.name!r} has no version {version!r}") from None
        return ModelVersionInfo(
            name=self.name, version=version, model_path=folder / MODEL_FILE, card=card
        )

    def _version_dirs(self) -> list[Path]:
        folder = self.folder / "versions"
        if not folder.is_dir():
            return []
        return sorted(
            (path for path in folder.iterdir() if path.name.isdigit()), key=lambda p: int(p.name)
        )

    def _aliases(self) -> dict[str, Any]:
        try:
            aliases: dict[str, Any] = json.loads((self.folder / "aliases.json").read_text())
        except FileNotFoundError:
            return {}
        return aliases

    def _write_aliases(self, aliases: dict[str, Any]) -> None:
        path = self.folder / "aliases.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(aliases, indent=2) + "\n")
        os.replace(tmp, path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Several workers start at once; a file lock keeps their first-run seeding to one.
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def check_expected(name: str, current: str | None, expected: str | None) -> None:
    """Raise ModelRegistryError unless production is `expected` (or nothing is expected)."""
    if expected is not None and current != expected:
        raise ModelRegistryError(
            f"production is version {current}, not {expected}: model {name!r} has changed "
            "since, so there is nothing to roll back"
        )
