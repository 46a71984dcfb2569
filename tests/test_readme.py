"""The README tells the truth: its curl example works as written, its settings table is complete."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leafwatch.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(name: str) -> str:
    match = re.search(f"<!-- {name}: start -->(.*?)<!-- {name}: end -->", README, re.S)
    assert match, f"README has no {name} section"
    return match.group(1)


def test_the_settings_table_lists_every_setting() -> None:
    documented = set(re.findall(r"`LEAFWATCH_([A-Z_]+)`", section("settings-table")))
    assert documented == {name.upper() for name in Settings.model_fields}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`leafwatch serve` on a free port, with the embedded defaults under a temporary folder."""
    port = free_port()
    env = {**os.environ, "LEAFWATCH_VAR_DIR": str(tmp_path / "var")}
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "leafwatch", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"leafwatch serve did not start: {log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README example uses curl")
def test_the_curl_example_works_as_written(served: str, tmp_path: Path) -> None:
    script = section("readme-example").split("```bash", 1)[1].split("```", 1)[0]
    script = script.replace("http://127.0.0.1:8000", served)
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "leaf.jpg", tmp_path / "examples" / "leaf.jpg")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    decoder = json.JSONDecoder()
    answers, text = [], result.stdout.strip()
    while text:
        answer, end = decoder.raw_decode(text)
        answers.append(answer)
        text = text[end:].strip()
    prediction, feedback, stats = answers
    assert prediction["model_name"] == "banana_sigatoka_detector"
    assert feedback["prediction_id"] == prediction["prediction_id"]
    assert feedback["is_correct"] is True
    assert feedback["correct_class_name"] == prediction["predicted_class_name"] == "Stage5"
    assert stats["total_predictions"] == 1
    assert stats["total_feedback"] == 1
    assert stats["feedback_by_source"]["expert_review"] == 1
