"""After drift: the retraining command gets the event on its stdin, and how it ended is logged."""

import json
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from structlog.typing import EventDict

from leafwatch.config import Settings
from leafwatch.service.drift import recommend_retraining, run_retraining_command
from leafwatch.storage.tables import DriftReport

LogEvents = Callable[[], list[EventDict]]

WRITE_STDIN = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read())"


def python(code: str, *args: str) -> str:
    """A command line running this Python code with the test's interpreter."""
    return shlex.join([sys.executable, "-c", code, *args])


def report() -> DriftReport:
    return DriftReport(
        id=7,
        run_at=datetime(2026, 12, 1, 10, tzinfo=UTC),
        model_version="3",
        scores={"image_statistics": 0.4},
        details={
            "consecutive_drifted_runs": 3,
            "features": [{"name": "brightness_mean", "drifted": True}],
        },
    )


def test_the_retraining_command_gets_the_event_as_json_on_stdin(
    tmp_path: Path, log_events: LogEvents
) -> None:
    out = tmp_path / "event with spaces.json"
    settings = Settings(var_dir=tmp_path, retraining_command=python(WRITE_STDIN, str(out)))
    recommend_retraining(settings, report())
    event = json.loads(out.read_text())
    assert event["event"] == "retraining_recommended"
    assert (event["model_version"], event["report_id"]) == ("3", 7)
    assert event["drifted_features"] == ["brightness_mean"]
    assert [line["event"] for line in log_events()] == [
        "retraining recommended",
        "retraining command succeeded",
    ]


def test_a_failing_command_is_logged_with_its_stderr(log_events: LogEvents) -> None:
    command = python("import sys; sys.stderr.write('no GPU today'); sys.exit(3)")
    assert run_retraining_command(command, {"event": "x"}, timeout_s=30) is False
    [line] = log_events()
    assert (line["event"], line["returncode"], line["stderr"]) == (
        "retraining command failed",
        3,
        "no GPU today",
    )
    assert line["program"] == sys.executable, "only the program is logged, not its arguments"


def test_a_command_over_its_time_is_stopped_with_what_it_started(
    tmp_path: Path, log_events: LogEvents
) -> None:
    marker = tmp_path / "child-still-ran"
    # The command starts a child that would write the marker after its parent's timeout.
    child = f"import time, pathlib; time.sleep(0.8); pathlib.Path({str(marker)!r}).touch()"
    parent = "import subprocess, sys, time; "
    parent += f"subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(30)"
    assert run_retraining_command(python(parent), {}, timeout_s=0.5) is False
    assert [line["event"] for line in log_events()] == ["retraining command timed out"]
    time.sleep(1.2)
    assert not marker.exists(), "the command's child was stopped with it"


def test_a_command_that_cannot_run_is_logged_not_raised(
    tmp_path: Path, log_events: LogEvents
) -> None:
    assert run_retraining_command(str(tmp_path / "missing"), {}, timeout_s=5) is False
    assert run_retraining_command("'unclosed", {}, timeout_s=5) is False
    assert run_retraining_command("  ", {}, timeout_s=5) is False
    assert [line["event"] for line in log_events()] == [
        "retraining command could not start",
        "retraining command could not be read",
        "retraining command is empty",
    ]
