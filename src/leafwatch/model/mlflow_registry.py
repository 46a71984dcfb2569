"""MLflow as the model registry: versions are MLflow's, production is an alias (or a stage).

A version's files (model.onnx, card.json, reference.npz) are the artifacts under `model/` of the
run that registered it; the registered model keeps the production history in a tag, so a
rollback goes back to the version promoted before, as with the local registry.
"""

import contextlib
import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leafwatch.errors import ModelRegistryError
from leafwatch.model.registry import (
    CARD_FILE,
    MODEL_FILE,
    PRODUCTION,
    REFERENCE_FILE,
    ModelVersionInfo,
    check_expected,
)

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

ARTIFACT_DIR = "model"
EXPERIMENT = "leafwatch"
HISTORY_TAG = "leafwatch.production_history"
STAGE = "Production"
_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<stage>[A-Za-z]+))?/?")


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, alias, stage) of models:/NAME@ALIAS, models:/NAME/STAGE or models:/NAME."""
    match = _URI.fullmatch(uri)
    if match is None:
        raise ModelRegistryError(
            f"{uri!r} is not an MLflow model URI: use models:/NAME@ALIAS, e.g. "
            "models:/banana_sigatoka_detector@production"
        )
    alias, stage = match["alias"], match["stage"]
    return match["name"], alias or (None if stage else PRODUCTION), stage


class MlflowModelRegistry:
    """The ModelRegistry interface over an MLflow model registry."""

    def __init__(self, uri: str, *, tracking_uri: str | None, cache_dir: Path) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ModelRegistryError(
                f"LEAFWATCH_MODEL_URI={uri} needs MLflow: pip install 'leafwatch[mlflow]' ({exc})"
            ) from None
        self.uri = uri
        self.tracking_uri = tracking_uri
        self.name, self.alias, self.stage = parse_model_uri(uri)
        self.client: MlflowClient = MlflowClient(
            tracking_uri=tracking_uri, registry_uri=tracking_uri
        )
        self.cache_dir = cache_dir / self.name

    def ensure_seeded(self) -> None:
        """Nothing to seed: an MLflow registry holds what the team registered."""

    def versions(self) -> list[ModelVersionInfo]:
        """Every registered version, oldest first (cards fetched, models not downloaded)."""
        found = self.client.search_model_versions(f"name='{self.name}'")
        return [self._info(found_version) for found_version in sorted(found, key=_number)]

    def register(self, model_path: Path, card: dict[str, Any]) -> ModelVersionInfo:
        """Log the files under `model/` of the active run (or a run of its own), then register."""
        import mlflow

        run = mlflow.active_run()
        run_id = run.info.run_id if run is not None else self._registration_run()
        with tempfile.TemporaryDirectory() as scratch:
            stored_card = {**card, "name": self.name}
            card_path = Path(scratch) / CARD_FILE
            card_path.write_text(json.dumps(stored_card, indent=2) + "\n")
            files = [model_path, card_path, model_path.with_name(REFERENCE_FILE)]
            for path in files:
                if path.is_file():
                    self.client.log_artifact(run_id, str(path), ARTIFACT_DIR)
        if run is None:
            self.client.set_terminated(run_id)
        self._ensure_registered_model()
        artifact_uri = self.client.get_run(run_id).info.artifact_uri
        created = self.client.create_model_version(
            self.name, f"{artifact_uri}/{ARTIFACT_DIR}", run_id=run_id
        )
        return self._info(created)

    def promote(self, version: str) -> None:
        """Point the production alias (or stage) at `version`, remembering the one it replaces."""
        self._get(version)
        history = self._history()
        if self._production_version() == version:
            return
        self._point_production_at(version)
        self._set_history([*history, version])

    def rollback(self, *, expected: str | None = None) -> tuple[str, str]:
        """Point production back at the version promoted before the current one."""
        # MLflow has no compare-and-set on an alias: the check narrows the race, not closes it.
        check_expected(self.name, self._production_version(), expected)
        history = self._history()
        if len(history) < 2:
            raise ModelRegistryError(
                f"model {self.name!r} has no earlier production version to roll back to"
            )
        current, previous = history[-1], history[-2]
        self._point_production_at(previous)
        self._set_history(history[:-1])
        return current, previous

    def production(self) -> ModelVersionInfo:
        """The production version, its files downloaded to the local cache."""
        version = self._production_version()
        if version is None:
            raise ModelRegistryError(
                f"MLflow model {self.name!r} has no {self.alias or self.stage} version: "
                "register and promote one (leafwatch train --mlflow --promote)"
            )
        return self._download(self._get(version))

    def _production_version(self) -> str | None:
        from mlflow.exceptions import MlflowException

        if self.alias is not None:
            try:
                return str(self.client.get_model_version_by_alias(self.name, self.alias).version)
            except MlflowException:
                pass  # no such alias (or no such model): MLflow's older stages are the fallback
        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
        except MlflowException:
            return None
        staged = [v for v in found if (v.current_stage or "") == (self.stage or STAGE)]
        return str(max(staged, key=_number).version) if staged else None

    def _point_production_at(self, version: str) -> None:
        if self.alias is not None:
            self.client.set_registered_model_alias(self.name, self.alias, version)
            return
        # Stages are deprecated in MLflow but still what older registries use; the URI chose them.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.client.transition_model_version_stage(
                self.name, version, self.stage or STAGE, archive_existing_versions=True
            )

    def _history(self) -> list[str]:
        model = self.client.get_registered_model(self.name)
        text = (model.tags or {}).get(HISTORY_TAG, "")
        return [part for part in text.split(",") if part]

    def _set_history(self, history: list[str]) -> None:
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, ",".join(history))

    def _get(self, version: str) -> "ModelVersion":
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(self.name, version)
        except MlflowException:
            known = ", ".join(info.version for info in self.versions()) or "none"
            raise ModelRegistryError(
                f"model {self.name!r} has no version {version!r} (registered: {known})"
            ) from None

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            self.client.create_registered_model(self.name)

    def _registration_run(self) -> str:
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else self.client.create_experiment(EXPERIMENT)
        )
        return str(self.client.create_run(experiment_id, run_name="register").info.run_id)

    def _info(self, found: "ModelVersion") -> ModelVersionInfo:
        folder = self.cache_dir / str(found.version)
        card_path = folder / CARD_FILE
        if not card_path.is_file():
            self._fetch(found, CARD_FILE, folder)
        card = json.loads(card_path.read_text())
        card.update(name=self.name, version=str(found.version))
        card.setdefault("registered_at", _iso(found.creation_timestamp))
        return ModelVersionInfo(self.name, str(found.version), folder / MODEL_FILE, card)

    def _download(self, found: "ModelVersion") -> ModelVersionInfo:
        info = self._info(found)
        if not info.model_path.is_file():
            self._fetch(found, MODEL_FILE, info.model_path.parent)
            # A version without a drift reference still serves.
            with contextlib.suppress(ModelRegistryError):
                self._fetch(found, REFERENCE_FILE, info.model_path.parent)
        return info

    def _fetch(self, found: "ModelVersion", file: str, folder: Path) -> None:
        """Download one artifact of a version into the cache, atomically."""
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException

        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".download-"))
        try:
            path = download_artifacts(
                artifact_uri=f"{found.source}/{file}",
                dst_path=str(staging),
                tracking_uri=self.tracking_uri,
            )
            Path(path).replace(folder / file)
        except (MlflowException, OSError) as exc:
            raise ModelRegistryError(
                f"version {found.version} of {self.name!r} has no {file} in {found.source}: {exc}"
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _number(found: "ModelVersion") -> int:
    return int(found.version)


def _iso(milliseconds: int | None) -> str:
    from datetime import UTC, datetime

    if milliseconds is None:
        return ""
    return datetime.fromtimestamp(milliseconds / 1000, UTC).isoformat(timespec="seconds")
