"""The README tells the truth: its curl example works as written, its settings table is complete."""

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from leafwatch.config import Settings
from tests.servers import leafwatch_serve

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(name: str) -> str:
    match = re.search(f"<!-- {name}: start -->(.*?)<!-- {name}: end -->", README, re.S)
    assert match, f"README has no {name} section"
    return match.group(1)


def test_the_settings_table_lists_every_setting() -> None:
    documented = set(re.findall(r"`LEAFWATCH_([A-Z0-9_]+)`", section("settings-table")))
    assert documented == {name.upper() for name in Settings.model_fields}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`leafwatch serve` on a free port, with the embedded defaults under a temporary folder."""
    with leafwatch_serve(tmp_path) as (url, _process):
        yield url


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
