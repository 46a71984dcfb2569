"""`leafwatch serve --workers 2` with a metrics port: one worker holds it, every count adds up,
and when the holder is killed another worker takes the port over."""

import os
import signal
from pathlib import Path

import httpx
import pytest

from leafwatch.stack import free_port
from tests.e2e.test_workers import fresh_get, live_worker_pids
from tests.scrape import total
from tests.servers import eventually, leafwatch_serve, listening_addresses

pytestmark = pytest.mark.slow

HEALTH = {"endpoint": "/health", "method": "GET", "status": "200"}


def listening_pid(port: int, pids: set[str]) -> int | None:
    """Which of these processes listens on the TCP port (read from /proc, Linux)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        try:
            if any(os.readlink(fd) in inodes for fd in fds.iterdir()):
                return int(pid)
        except (FileNotFoundError, PermissionError):
            continue
    return None


def test_one_worker_serves_the_metrics_port_and_another_takes_over(tmp_path: Path) -> None:
    port = free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    env = {"LEAFWATCH_METRICS_PORT": str(port)}
    with leafwatch_serve(tmp_path, "--workers", "2", env=env) as (url, _process):
        sent = 0
        for _ in range(40):
            assert fresh_get(f"{url}/health").status_code == 200
            sent += 1
        assert fresh_get(f"{url}/metrics").status_code == 404
        text = eventually(lambda: fresh_get(metrics_url).text)
        assert total(text, "api_requests_total", **HEALTH) == sent
        workers = live_worker_pids(text)
        assert len(workers) == 2
        holder = listening_pid(port, workers)
        assert holder is not None

        os.kill(holder, signal.SIGKILL)

        def served_by_another() -> str | None:
            try:
                text = fresh_get(metrics_url).text
            except httpx.TransportError:
                return None
            current = live_worker_pids(text)
            new_holder = listening_pid(port, current)
            return text if new_holder not in (None, holder) else None

        text = eventually(served_by_another, timeout=60)
        assert text, "no worker took the metrics port over"
        # The killed worker's counts stay in the sums.
        assert total(text, "api_requests_total", **HEALTH) == sent


def test_the_metrics_port_binds_where_serve_was_told_to_listen(tmp_path: Path) -> None:
    # `serve --host` reaches the workers' settings, so the metrics port follows it unless
    # LEAFWATCH_METRICS_HOST says otherwise (a container's Prometheus comes from another address).
    port = free_port()
    env = {"LEAFWATCH_METRICS_PORT": str(port)}
    with leafwatch_serve(tmp_path, "--host", "0.0.0.0", env=env) as (_url, _process):
        assert listening_addresses(port) == {"0.0.0.0"}
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
