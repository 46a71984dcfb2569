"""What the simulator changes: the fault switch, the served model version, the process."""

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.model.registry import LocalModelRegistry
from leafwatch.simulate.control import Admin, ControlError, ModelSwitch, Outage
from tests.servers import uvicorn_thread

TOKEN = "control-admin"


def process_state(pid: int) -> str:
    """The one-letter state in /proc: S sleeping, T stopped."""
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]


def test_the_worse_model_is_promoted_and_restored_once(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "models", "leaves")
    switch = ModelSwitch(registry)
    assert switch.promote_worse() == ("1", "2")
    assert registry.production().version == "2"
    assert switch.serving_worse() == "2"
    assert switch.restore() == ("2", "1")
    assert switch.serving_worse() is None
    assert switch.restore() is None  # nothing to undo: production is not a worse version
    assert registry.production().version == "1"


def test_an_outage_pauses_the_process_and_resumes_it() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        outage = Outage([sleeper.pid])
        outage.pause()
        deadline = time.monotonic() + 5
        while process_state(sleeper.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process_state(sleeper.pid) == "T"
        outage.resume()
        assert process_state(sleeper.pid) in "SR"
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(ControlError, match=f"no process {sleeper.pid}"):
        Outage([sleeper.pid]).pause()


def test_faults_and_reloads_go_through_the_admin_endpoints(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path / "var",
        migrate_on_start=True,
        faults_enabled=True,
        admin_token=TOKEN,  # type: ignore[arg-type]
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def drive(url: str) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            admin = Admin(client, TOKEN)
            await admin.set_fault(latency_ms=120, error_ratio=0.25)
            faults = (await client.get("/api/v1/admin/faults", headers=headers)).json()["faults"]
            assert [(f["route"], f["latency_ms"], f["error_ratio"]) for f in faults] == [
                ("/api/v1/predict", 120, 0.25)
            ]
            await admin.clear_faults()
            assert (await client.get("/api/v1/admin/faults", headers=headers)).json() == {
                "faults": [],
                "removed": None,
            }
            registry = LocalModelRegistry(settings.resolved_model_dir(), settings.model_name)
            ModelSwitch(registry).promote_worse()
            assert await admin.reload_model() == "2"
            with pytest.raises(ControlError, match="--admin-token-file"):
                await Admin(client, "wrong").clear_faults()

    with uvicorn_thread(create_app(settings)) as url:
        asyncio.run(drive(url))


def test_a_service_without_the_fault_switch_says_how_to_turn_it_on(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path / "var",
        migrate_on_start=True,
        admin_token=TOKEN,  # type: ignore[arg-type]
    )

    async def drive(url: str) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            with pytest.raises(ControlError, match="LEAFWATCH_FAULTS_ENABLED=true"):
                await Admin(client, TOKEN).set_fault(latency_ms=10, error_ratio=0)

    with uvicorn_thread(create_app(settings)) as url:
        asyncio.run(drive(url))
