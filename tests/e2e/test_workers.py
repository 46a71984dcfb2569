"""`leafwatch serve --workers 2`: the workers' counts add up exactly, whoever answers the scrape."""

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.conftest import image_bytes
from tests.scrape import samples, total
from tests.servers import leafwatch_serve

pytestmark = pytest.mark.slow

HEALTH = {"endpoint": "/health", "method": "GET", "status": "200"}


def fresh_get(url: str) -> httpx.Response:
    """A request on a new connection, so the kernel may hand it to either worker."""
    with httpx.Client(headers={"Connection": "close"}) as client:
        return client.get(url)


def health_counts_per_worker(directory: Path) -> dict[int, float]:
    """What each worker's own counter file holds for GET /health, read without the server."""
    counts: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[-1])
        values = MmapedDict.read_all_values_from_file(str(path))
        counts[pid] = sum(
            value
            for key, value, _timestamp, _position in values
            if '"api_requests_total"' in key and '"/health"' in key and '"200"' in key
        )
    return counts


def live_worker_pids(text: str) -> set[str]:
    return {s.labels["pid"] for s in samples(text) if s.name == "process_resident_memory_bytes"}


def test_two_workers_add_up_exactly_and_survive_a_killed_worker(tmp_path: Path) -> None:
    directory = tmp_path / "var" / "metrics"
    stale = directory / "counter_999999.db"
    directory.mkdir(parents=True)
    stale.write_bytes(b"left over from a previous run")
    with leafwatch_serve(tmp_path, "--workers", "2") as (url, _process):
        assert not stale.exists(), "the directory is emptied at start"
        sent = 0
        for _ in range(200):
            assert fresh_get(f"{url}/health").status_code == 200
            sent += 1
        answer = httpx.post(
            f"{url}/api/v1/predict",
            files={"file": ("leaf.jpg", image_bytes(), "image/jpeg")},
            data={"user_id": "farmer-1"},
        )
        assert answer.status_code == 200
        per_worker = health_counts_per_worker(directory)
        assert len([count for count in per_worker.values() if count]) == 2, per_worker
        scrapes = [fresh_get(f"{url}/metrics").text for _ in range(10)]
        for text in scrapes:
            assert total(text, "api_requests_total", **HEALTH) == sent
            assert total(text, "model_predictions_total") == 1
            assert total(text, "api_active_requests") == 1  # the scrape itself
        workers = live_worker_pids(scrapes[0])
        assert len(workers) == 2
        # Each worker counts its own garbage collections into the shared files.
        gc_runs = total(scrapes[0], "python_gc_collections_total", generation="0")
        assert gc_runs > 0

        victim = int(sorted(workers)[0])
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:  # uvicorn starts a replacement
            text = fresh_get(f"{url}/metrics").text
            current = live_worker_pids(text)
            if len(current) == 2 and str(victim) not in current:
                break
            assert time.monotonic() < deadline, f"no replacement worker: {current}"
            time.sleep(0.5)
        for _ in range(50):
            assert fresh_get(f"{url}/health").status_code == 200
            sent += 1
        text = fresh_get(f"{url}/metrics").text
        # The dead worker's counts are kept (counters never go back); its live gauges are gone.
        assert total(text, "api_requests_total", **HEALTH) == sent
        assert total(text, "api_active_requests") == 1
        assert not list(directory.glob(f"gauge_livesum_{victim}.db"))
    # Both workers appended to one log file: every line whole, none lost.
    log_text = (tmp_path / "logs" / "app.log").read_text()
    log_lines = [json.loads(line) for line in log_text.splitlines()]
    health = [
        line for line in log_lines if line["event"] == "request" and line["route"] == "/health"
    ]
    assert len(health) == sent
