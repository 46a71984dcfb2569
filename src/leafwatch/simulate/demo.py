"""`leafwatch demo`'s services: a LeafWatch, Prometheus and Alertmanager set up for a fast story.

LeafWatch runs with the fault switch, automatic rollback and a fresh admin token (a file in the
demo's directory, never in the checkout); Prometheus evaluates the shipped rules with every
duration divided by the speed; Alertmanager sends model pages to LeafWatch's webhook.
"""

import contextlib
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from leafwatch.stack import AlertmanagerOverrides, LocalStack, StackOptions, free_port
from leafwatch.stack.processes import Process

TOKEN_FILE = "leafwatch_admin_token"


@dataclass(frozen=True)
class DemoServices:
    """Where the demo's services answer, and what the simulator needs to drive them."""

    url: str
    pid: int
    prometheus_url: str
    alertmanager_url: str
    admin_token_file: Path
    model_dir: Path
    workdir: Path


def leafwatch_environment(workdir: Path, *, speed: float, token_file: Path) -> dict[str, str]:
    """LEAFWATCH_* settings of the demo's LeafWatch (any set in this shell are left out)."""
    return {
        "LEAFWATCH_VAR_DIR": str(workdir / "var"),
        "LEAFWATCH_LOG_FILE": str(workdir / "logs" / "app.log"),
        "LEAFWATCH_LOG_FORMAT": "json",
        "LEAFWATCH_FAULTS_ENABLED": "true",
        "LEAFWATCH_AUTO_ROLLBACK": "true",
        "LEAFWATCH_ADMIN_TOKEN_FILE": str(token_file),
        # Accuracy figures recomputed every 2 s, not 30: the rules' windows are seconds long.
        "LEAFWATCH_METRICS_CACHE_SECONDS": "2",
        "LEAFWATCH_ERROR_RATE_WINDOW_SECONDS": f"{max(300 / speed, 10):g}",
        # Drift every 10 s over the last minute: three drifted runs in a row take about 40 s.
        "LEAFWATCH_DRIFT_INTERVAL_SECONDS": "10",
        "LEAFWATCH_DRIFT_WINDOW_HOURS": f"{60 / 3600:.6f}",
        "LEAFWATCH_DRIFT_MIN_SAMPLES": "100",
        "LEAFWATCH_MODEL_POLL_SECONDS": "5",
    }


def write_admin_token(directory: Path) -> Path:
    """A fresh random admin token in a file only this user can read."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / TOKEN_FILE
    path.touch(mode=0o600)
    path.write_text(secrets.token_urlsafe(32) + "\n")
    return path


@contextlib.contextmanager
def leafwatch_process(
    workdir: Path, environment: dict[str, str], *, timeout: float = 90
) -> Iterator[tuple[str, int]]:
    """`leafwatch serve` on a free port until the block ends; output in workdir/leafwatch.log."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEAFWATCH_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(environment)
    command = [sys.executable, "-m", "leafwatch", "serve", "--port", str(port), "--workers", "1"]
    process = Process(
        "LeafWatch",
        command,
        url=f"http://127.0.0.1:{port}",
        log=workdir / "leafwatch.log",
        ready_path="/ready",
        cwd=workdir,
    )
    process.start(env)
    assert process.popen is not None
    try:
        process.wait_ready(timeout)
        yield process.url, process.popen.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.popen.pid, signal.SIGCONT)  # paused by an outage phase: let it stop
        process.stop(timeout=30)


@contextlib.contextmanager
def demo_services(workdir: Path, *, deploy_dir: Path, speed: float) -> Iterator[DemoServices]:
    """LeafWatch, then Prometheus and Alertmanager watching it; all stopped when the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    token_file = write_admin_token(workdir / "secrets")
    environment = leafwatch_environment(workdir, speed=speed, token_file=token_file)
    with leafwatch_process(workdir, environment) as (url, pid):
        options = StackOptions(
            deploy_dir=deploy_dir,
            data_dir=workdir / "stack",
            leafwatch=(url.removeprefix("http://"),),
            time_scale=speed,
            alertmanager=AlertmanagerOverrides(
                group_wait="1s",
                group_interval="2s",
                leafwatch_admin_token_file=token_file,
            ),
        )
        with LocalStack(options) as stack:
            yield DemoServices(
                url=url,
                pid=pid,
                prometheus_url=stack.prometheus_url,
                alertmanager_url=stack.alertmanager_url,
                admin_token_file=token_file,
                model_dir=workdir / "var" / "models",
                workdir=workdir,
            )
