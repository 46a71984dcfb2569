"""`leafwatch stack up`: prints working URLs, runs until a signal, and stops both servers."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from leafwatch.cli import app
from tests.servers import free_port
from tests.stack import DEPLOY

URL_LINE = re.compile(r"^(prometheus|alertmanager|alerts|targets)\s+(http://\S+)\s*$")


def lines_of(process: subprocess.Popen[str]) -> tuple["queue.Queue[str | None]", threading.Thread]:
    """The process's output, line by line, read in a thread (None at its end)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return lines, thread


def read_until(lines: "queue.Queue[str | None]", marker: str, timeout: float) -> list[str]:
    """Lines up to and including the first that contains `marker`."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {marker!r} in {timeout} s:\n" + "\n".join(seen)) from None
        if line is None:
            raise AssertionError(f"output ended before {marker!r}:\n" + "\n".join(seen))
        seen.append(line)
        if marker in line:
            return seen


def processes_using(directory: Path, *, besides: int) -> list[int]:
    """Pids of the processes whose command line names `directory`, other than `besides`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == besides:
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:  # it ended while we looked
            continue
        if str(directory).encode() in command:
            pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stack_up_prints_urls_that_answer_and_stops_cleanly_on_a_signal(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    data = tmp_path / "stack"
    nobody = f"127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "leafwatch", "stack", "up",
        "--leafwatch", nobody,
        "--prometheus-port", str(free_port()),
        "--alertmanager-port", str(free_port()),
        "--deploy-dir", str(DEPLOY),
        "--data-dir", str(data),
        "--scrape-interval", "1s",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    reader = None
    try:
        lines, reader = lines_of(process)
        printed = read_until(lines, "Ctrl-C stops", timeout=30)
        text = " ".join(printed)
        assert f"LeafWatch at {nobody} does not answer /health" in text
        assert "notifications" in text, "missing receiver secrets are announced"
        urls = dict(match.groups() for line in printed if (match := URL_LINE.match(line)))
        assert set(urls) == {"prometheus", "alertmanager", "alerts", "targets"}, printed
        for name in ("prometheus", "alertmanager"):
            assert httpx.get(f"{urls[name]}/-/ready", timeout=5).status_code == 200
        for name in ("alerts", "targets"):
            assert httpx.get(urls[name], timeout=5).status_code == 200
        assert len(processes_using(data, besides=process.pid)) == 2, (
            "Prometheus and Alertmanager run"
        )
        process.send_signal(stop_signal)
        assert process.wait(timeout=30) == 0, "\n".join(read_until(lines, "", 1))
        assert "stopped" in "\n".join(read_until(lines, "stopped", timeout=5))
        assert processes_using(data, besides=process.pid) == [], (
            "both servers ended with the command"
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if reader is not None:
            reader.join(timeout=5)
        assert process.stdout is not None
        process.stdout.close()
        for pid in processes_using(data, besides=process.pid):
            os.kill(pid, signal.SIGKILL)


runner = CliRunner()


def test_stack_up_without_a_deploy_directory_fails_clearly(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["stack", "up", "--deploy-dir", str(tmp_path / "nowhere"), "--leafwatch", "127.0.0.1:1"],
    )
    assert result.exit_code == 1
    assert "no deploy directory" in result.output


def test_stack_up_refuses_a_malformed_scrape_interval(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stack", "up", "--scrape-interval", "fast"])
    assert result.exit_code == 1
    assert "not a Prometheus duration" in result.output
