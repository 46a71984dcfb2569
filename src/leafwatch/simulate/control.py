"""What the simulator changes in LeafWatch: faults, the served model, and the process itself."""

import os
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from leafwatch.model.registry import LocalModelRegistry
from leafwatch.simulate.traffic import PREDICT
from leafwatch.simulate.worse_model import write_worse_model

FAULTS = "/api/v1/admin/faults"
RELOAD = "/api/v1/admin/model/reload"


class ControlError(Exception):
    """LeafWatch refused or could not be changed as the scenario needs; the message says why."""


class Admin:
    """LeafWatch's admin endpoints, with the admin token."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    async def set_fault(self, *, latency_ms: int, error_ratio: float) -> None:
        """Inject latency and errors into POST /api/v1/predict."""
        fault = {"route": PREDICT, "latency_ms": latency_ms, "error_ratio": error_ratio}
        await self._call("POST", FAULTS, json=fault)

    async def clear_faults(self) -> None:
        """Remove every injected fault."""
        await self._call("DELETE", FAULTS)

    async def reload_model(self) -> str | None:
        """Make LeafWatch serve the registry's production version now; return the version."""
        answer = await self._call("POST", RELOAD)
        version = answer.json()["model_version"]
        return None if version is None else str(version)

    async def _call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            answer = await self.client.request(
                method,
                path,
                headers=self.headers,
                timeout=30,
                **kwargs,  # type: ignore[arg-type]
            )
        except httpx.HTTPError as exc:
            raise ControlError(f"{method} {path}: {exc}") from exc
        if answer.status_code == 404 and path == FAULTS:
            raise ControlError(
                "the fault switch is off: start LeafWatch with LEAFWATCH_FAULTS_ENABLED=true"
            )
        if answer.status_code in (401, 403):
            raise ControlError(
                f"{method} {path} refused the admin token ({answer.status_code}): pass the file "
                "of LEAFWATCH_ADMIN_TOKEN(_FILE) with --admin-token-file"
            )
        if answer.status_code >= 400:
            raise ControlError(f"{method} {path} answered {answer.status_code}: {answer.text}")
        return answer


@dataclass
class ModelSwitch:
    """Registers the worse model in the served registry, and takes it out again if need be."""

    registry: LocalModelRegistry
    worse_versions: list[str] = field(default_factory=list)

    def promote_worse(self) -> tuple[str, str]:
        """Register a worse copy of the production version and promote it; (from, to)."""
        self.registry.ensure_seeded()
        good = self.registry.production()
        with tempfile.TemporaryDirectory(prefix="leafwatch-worse-") as folder:
            path, card = write_worse_model(good, Path(folder))
            worse = self.registry.register(path, card)
        self.registry.promote(worse.version)
        self.worse_versions.append(worse.version)
        return good.version, worse.version

    def serving_worse(self) -> str | None:
        """The worse version if production is still one, else None."""
        version = self.registry.production().version
        return version if version in self.worse_versions else None

    def restore(self) -> tuple[str, str] | None:
        """Roll production back if it is a worse version; (from, to), or None if it is not."""
        if self.serving_worse() is None:
            return None
        return self.registry.rollback()


@dataclass
class Outage:
    """Pauses LeafWatch's processes (SIGSTOP): they neither answer nor restart, as if hung."""

    pids: list[int]
    paused: bool = False

    def pause(self) -> None:
        """Stop every process where it stands."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """Let them run again; requests that waited are answered then."""
        if self.paused:
            self._signal(signal.SIGCONT)
            self.paused = False

    def _signal(self, number: signal.Signals) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                raise ControlError(f"no process {pid}: check --pid") from None
            except PermissionError:
                raise ControlError(f"not allowed to signal process {pid}") from None
