"""Real servers for tests on free 127.0.0.1 ports, stopped afterwards: LeafWatch, receivers."""

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp

from leafwatch.stack import free_port


@contextmanager
def running(
    command: list[str],
    *,
    ready_url: str,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30,
    ready: Callable[[httpx.Response], bool] = lambda answer: answer.status_code == 200,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server until the block ends, once `ready_url` answers (200, unless `ready` says
    otherwise); its output goes to `log`."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready(httpx.get(ready_url, timeout=1)):
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{command[0]} did not start: {log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def leafwatch_serve(
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    ready_timeout: float = 60,
    port: int | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run `leafwatch serve` with its var dir under `workdir` until the block ends.

    On `port` when given (so that a scraper can be told the address before it answers).
    """
    port = port or free_port()
    environment = {**os.environ, "LEAFWATCH_VAR_DIR": str(workdir / "var"), **(env or {})}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "leafwatch", "serve", "--port", str(port), *args]
    with running(
        command,
        ready_url=f"{url}/ready",
        log=workdir / f"serve-{port}.log",
        env=environment,
        cwd=workdir,
        timeout=ready_timeout,
    ) as process:
        yield url, process


@contextmanager
def uvicorn_thread(app: ASGIApp) -> Iterator[str]:
    """Serve an app object with a real uvicorn in a thread (for apps a test has added routes to)."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def eventually(check: Callable[[], Any], timeout: float = 20) -> Any:
    """The first truthy result of `check`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


@contextmanager
def receiver() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """An HTTP server on 127.0.0.1 that records every POST (path, body) and answers 200."""
    received: list[tuple[str, bytes]] = []

    class Record(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Record)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def listening_addresses(port: int) -> set[str]:
    """The addresses something listens on at this TCP port (read from /proc, Linux)."""
    addresses = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                # The kernel prints each 32-bit word of the address in host (little-endian) order.
                raw = bytes.fromhex(address)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                addresses.add(socket.inet_ntop(family, words))
    return addresses
