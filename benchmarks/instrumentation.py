"""Benchmark: what request instrumentation costs in throughput and latency.

Serves the same LeafWatch app bare, with LeafWatch's metrics only, with everything on (metrics,
access and application logs, traces exported over OTLP) and with prometheus-fastapi-instrumentator,
each in its own uvicorn process (1 worker), and loads GET /health and POST /api/v1/predict from a
separate process: wrk when installed, else a Python generator. Variants are interleaved over
several rounds; the table gives medians, and throughput ratios against bare in the same round.

    .venv/bin/python benchmarks/instrumentation.py [--quick] [--duration 10] [--rounds 5]
        [--concurrency 8] [--generator auto|wrk|python]
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.observe.middleware import ObserveMiddleware

BENCH_DIR = Path(__file__).resolve().parent
IMAGE = BENCH_DIR.parent / "examples" / "leaf.jpg"
BOUNDARY = "leafwatch-bench"
# No per-request log line and no recorded span: the in-code spans of the predict path become
# no-ops, and a variant's cost is its middleware's. Errors would still be logged.
QUIET: dict[str, Any] = {
    "access_log": False,
    "log_level": "warning",
    "log_file": "",
    "trace_sample_ratio": 0.0,
    "otlp_endpoint": None,
}


def untraced(app: FastAPI) -> FastAPI:
    """The app without OpenTelemetry's request middleware."""
    FastAPIInstrumentor.uninstrument_app(app)
    # uninstrument_app builds the middleware stack at once; unbuilt again, it is built at the
    # first request, with whatever the variant has added or removed by then.
    app.middleware_stack = None
    return app


# The variants: each a factory uvicorn calls in its own process (`instrumentation:<name>`).


def bare() -> FastAPI:
    """LeafWatch, quiet, without its middleware and without OpenTelemetry's."""
    app = untraced(create_app(Settings(**QUIET)))
    app.user_middleware = [m for m in app.user_middleware if m.cls is not ObserveMiddleware]
    return app


def leafwatch_metrics() -> FastAPI:
    """LeafWatch's middleware (metrics, request id), quiet and without OpenTelemetry's."""
    return untraced(create_app(Settings(**QUIET)))


def everything_on() -> FastAPI:
    """LeafWatch as it ships, with traces exported to LEAFWATCH_OTLP_ENDPOINT."""
    return create_app(Settings())


def instrumentator() -> FastAPI:
    """The bare app with prometheus-fastapi-instrumentator's defaults."""
    from prometheus_fastapi_instrumentator import Instrumentator

    app = bare()
    # Its default registry is the process-wide one; each variant has its own process, so no clash.
    Instrumentator().instrument(app)
    return app


BASELINE = "bare"
METRICS = "LeafWatch metrics"
EVERYTHING = "everything on (metrics, logs, traces)"
INSTRUMENTATOR = "prometheus-fastapi-instrumentator"
VARIANTS: dict[str, Callable[[], FastAPI]] = {
    BASELINE: bare,
    METRICS: leafwatch_metrics,
    EVERYTHING: everything_on,
    INSTRUMENTATOR: instrumentator,
}
# Checked against each server's /metrics, so no variant measures something else than its name.
WITHOUT_LEAFWATCH_METRICS = frozenset({BASELINE, INSTRUMENTATOR})
ROUTES = {"GET /health": "/health", "POST /api/v1/predict": "/api/v1/predict"}
TRIVIAL = "GET /health"
GOALS = {METRICS: 0.95, EVERYTHING: 0.85}


@dataclass(frozen=True)
class Sample:
    """One load run against one server."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    failed: int


# wrk: the JSON line its Lua `done` hook prints; the predict script builds a multipart upload.
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\\"requests\\": %d, \\"duration_us\\": %d, \\"failed\\": %d, "
    .. "\\"p50_us\\": %.1f, \\"p99_us\\": %.1f}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
WRK_PREDICT = (
    WRK_REPORT
    + """
local head, rest, tail, salt, counter
local content_type = "multipart/form-data; boundary=BOUNDARY"

init = function(args)
  local file = assert(io.open(args[1], "rb"))
  local image = file:read("*a")
  file:close()
  salt, counter = args[2], 0
  head = "--BOUNDARY\\r\\nContent-Disposition: form-data; name=\\"user_id\\"\\r\\n\\r\\nbench\\r\\n"
    .. "--BOUNDARY\\r\\nContent-Disposition: form-data; name=\\"file\\"; "
    .. "filename=\\"leaf.jpg\\"\\r\\nContent-Type: image/jpeg\\r\\n\\r\\n"
    .. image:sub(1, 2)
  rest = image:sub(3)
  tail = "\\r\\n--BOUNDARY--\\r\\n"
end

-- A comment segment (COM) right after the JPEG's SOI, 42 unique bytes: the content-addressed
-- store writes every upload, and the image stays a valid JPEG with nothing after its end.
request = function()
  counter = counter + 1
  local unique = string.format("%s%010d", salt, counter)
  local body = head .. "\\255\\254" .. string.char(0, #unique + 2) .. unique .. rest .. tail
  return wrk.format("POST", nil, {["Content-Type"] = content_type}, body)
end
""".replace("BOUNDARY", BOUNDARY)
)


def multipart(image: bytes, unique: str) -> bytes:
    """The upload the wrk script sends, for the Python load generator."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="user_id"\r\n\r\nbench\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="leaf.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    comment = b"\xff\xfe" + struct.pack(">H", len(unique) + 2) + unique.encode()
    jpeg = image[:2] + comment + image[2:]
    return head.encode() + jpeg + f"\r\n--{BOUNDARY}--\r\n".encode()


def wrk_load(
    url: str, route: str, duration: int, concurrency: int, pin: list[str], scripts: Path
) -> Sample:
    """Run wrk (one thread) against one route and read its JSON report."""
    script = scripts / ("predict.lua" if route.startswith("POST") else "report.lua")
    command = [
        *pin,
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{duration}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url + ROUTES[route],
        "--",
        str(IMAGE),
        uuid.uuid4().hex,
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=duration + 60
    )
    if output.returncode != 0:
        raise RuntimeError(f"wrk failed ({output.returncode}): {output.stderr or output.stdout}")
    report = next(line for line in output.stdout.splitlines() if line.startswith("BENCH "))
    figures = json.loads(report.removeprefix("BENCH "))
    return Sample(
        rps=figures["requests"] / (figures["duration_us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        requests=figures["requests"],
        failed=figures["failed"],
    )


def python_load(url: str, route: str, duration: int, concurrency: int, pin: list[str]) -> Sample:
    """Run the Python load generator in its own process."""
    command = [*pin, sys.executable, __file__, "--python-load", url, route]
    command += [str(duration), str(concurrency)]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration + 60
    )
    return Sample(**json.loads(output.stdout))


async def _python_load(url: str, route: str, duration: int, concurrency: int) -> Sample:
    """Keep-alive HTTP/1.1 clients on raw sockets: far less overhead than an HTTP library."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    image = IMAGE.read_bytes()
    salt = uuid.uuid4().hex
    latencies: list[float] = []
    failed = 0

    def request(unique: str) -> bytes:
        if not route.startswith("POST"):
            return f"GET {ROUTES[route]} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        body = multipart(image, unique)
        head = (
            f"POST {ROUTES[route]} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def client(index: int, deadline: float) -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection(host, port)
        counter = 0
        try:
            while time.perf_counter() < deadline:
                counter += 1
                message = request(f"{salt}-{index}-{counter}")
                started = time.perf_counter()
                writer.write(message)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                failed += not head.startswith((b"HTTP/1.1 2", b"HTTP/1.1 3"))
        finally:
            writer.close()

    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(client(index, deadline) for index in range(concurrency)))
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return Sample(
        rps=len(latencies) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=quantiles[98] * 1000,
        requests=len(latencies),
        failed=failed,
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DiscardSpans(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that accepts every export and keeps nothing."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a collector answers

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)  # logs one line per export to stderr: the proof spans arrive
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def servers(
    names: list[str], scratch: Path, pin: list[str], sink_pin: list[str]
) -> Iterator[dict[str, str]]:
    """Start one uvicorn process per variant, yield their URLs, stop them all whatever happens."""
    # Inherited LEAFWATCH_* settings would change what is measured; every variant runs the defaults.
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LEAFWATCH_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    sink_port = free_port()
    environment["LEAFWATCH_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink_port}/v1/traces"
    processes: list[subprocess.Popen[bytes]] = []
    urls = {}
    try:
        with (scratch / "otlp-sink.log").open("wb") as output:
            # On the load's core: receiving spans is the collector's work, not the service's.
            command = [*sink_pin, sys.executable, __file__, "--otlp-sink", str(sink_port)]
            processes.append(subprocess.Popen(command, stdout=output, stderr=output))
        for name in names:
            factory = VARIANTS[name].__name__
            var_dir = scratch / factory
            var_dir.mkdir()
            port = free_port()
            command = [
                *pin,
                sys.executable,
                "-m",
                "uvicorn",
                f"instrumentation:{factory}",
                "--factory",
                "--app-dir",
                str(BENCH_DIR),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            with (var_dir / "stdout.log").open("wb") as output:
                process = subprocess.Popen(
                    command,
                    env={**environment, "LEAFWATCH_VAR_DIR": str(var_dir)},
                    cwd=var_dir,  # the default log file, logs/app.log, lands there
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            processes.append(process)
            urls[name] = f"http://127.0.0.1:{port}"
            wait_ready(process, urls[name], var_dir / "stdout.log")
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Wait until /ready answers 200 (migrations applied, model loaded)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def counts_health(url: str) -> bool:
    """Whether LeafWatch's own request counter has seen GET /health on this server."""
    text = httpx.get(f"{url}/metrics", timeout=10).raise_for_status().text
    return any(
        sample.name == "api_requests_total" and sample.labels.get("endpoint") == "/health"
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )


def wait_exports(log: Path, timeout: float = 15) -> int:
    """Span exports the sink received; spans leave in batches, so give the last one time."""
    deadline = time.monotonic() + timeout
    while (exports := log.read_text().count('"POST ')) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no span reached the OTLP sink: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    return exports


Samples = dict[tuple[str, str], list[Sample]]


def ratios(samples: Samples) -> dict[tuple[str, str], list[float]]:
    """Each run's throughput over bare's in the same round and on the same route."""
    return {
        (route, name): [s.rps / b.rps for s, b in zip(runs, samples[route, BASELINE], strict=True)]
        for (route, name), runs in samples.items()
    }


def added_us(samples: Samples) -> dict[tuple[str, str], list[float]]:
    """Each run's extra time per request over bare's: on a saturated core, CPU time added."""
    return {
        (route, name): [
            (1 / s.rps - 1 / b.rps) * 1e6
            for s, b in zip(runs, samples[route, BASELINE], strict=True)
        ]
        for (route, name), runs in samples.items()
    }


def report(samples: Samples) -> list[str]:
    """The Markdown table, one row per route and variant."""
    relative, added = ratios(samples), added_us(samples)
    lines = [
        "| route | setup | requests/s | / bare (min-max) | added µs/request | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for route in ROUTES:
        for name in VARIANTS:
            runs, spread = samples[route, name], relative[route, name]
            ratio = f"{statistics.median(spread):.3f} ({min(spread):.3f}-{max(spread):.3f})"
            extra = f"{statistics.median(added[route, name]):.0f}"
            if name == BASELINE:
                ratio, extra = "1.000", ""
            lines.append(
                f"| {route} | {name} | {statistics.median(s.rps for s in runs):.0f} | {ratio} | "
                f"{extra} | {statistics.median(s.p50_ms for s in runs):.2f} | "
                f"{statistics.median(s.p99_ms for s in runs):.2f} |"
            )
    return lines


def verdicts(samples: Samples) -> list[str]:
    """Each goal of the issue against the median ratios."""
    relative = ratios(samples)
    lines = []
    for name, goal in GOALS.items():
        value = statistics.median(relative[TRIVIAL, name])
        verdict = "met" if value >= goal else "NOT met"
        lines.append(f"- {name} keeps >= {goal} of bare on {TRIVIAL}: {verdict} ({value:.3f})")
    for route in ROUTES:
        ours, theirs = relative[route, METRICS], relative[route, INSTRUMENTATOR]
        lost, lost_theirs = 1 - statistics.median(ours), 1 - statistics.median(theirs)
        verdict = "met" if lost < lost_theirs else "NOT met"
        # Overlapping per-round ranges: the difference is smaller than this machine's noise.
        if min(ours) <= max(theirs) and min(theirs) <= max(ours):
            verdict += ", within the round-to-round spread"
        lines.append(
            f"- {METRICS} cost less than {INSTRUMENTATOR} on {route}: {verdict} "
            f"(throughput lost: {lost:.1%} against {lost_theirs:.1%})"
        )
    return lines


def pinning() -> tuple[list[str], list[str], str]:
    """taskset prefixes for the servers and the load, and how they were placed."""
    taskset = shutil.which("taskset")
    cpus = sorted(os.sched_getaffinity(0))
    if not taskset or len(cpus) < 2:
        return [], [], "not pinned (needs taskset and 2 CPUs)"
    # Server and load each get a core of their own; this process waits on the load's core.
    os.sched_setaffinity(0, {cpus[1]})
    return (
        [taskset, "-c", str(cpus[0])],
        [taskset, "-c", str(cpus[1])],
        f"servers on CPU {cpus[0]}, load on CPU {cpus[1]} (taskset)",
    )


def measure(
    urls: dict[str, str], load: Callable[[str, str, int], Sample], args: argparse.Namespace
) -> Samples:
    """Load every variant on every route, interleaved, round after round."""
    console = Console(soft_wrap=True)
    names = list(urls)
    samples: Samples = {(route, name): [] for route in ROUTES for name in names}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console, refresh_per_second=2) as bar:
        task = bar.add_task("measuring", total=args.rounds * len(ROUTES) * len(names))
        for round_number in range(1, args.rounds + 1):
            # Each round starts with another variant, so none always runs first or last.
            shift = (round_number - 1) % len(names)
            for route in ROUTES:
                for name in names[shift:] + names[:shift]:
                    bar.update(task, description=f"round {round_number} {route} {name}")
                    sample = load(urls[name], route, args.duration)
                    samples[route, name].append(sample)
                    failed = f", {sample.failed} FAILED" if sample.failed else ""
                    bar.console.print(
                        f"round {round_number} {route:<21} {name:<34} {sample.rps:8.0f}/s  "
                        f"p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms{failed}"
                    )
                    bar.advance(task)
    return samples


def run(args: argparse.Namespace) -> None:
    """Start the servers, warm them up, check each is what its name says, measure, report."""
    console = Console(soft_wrap=True)
    wrk = shutil.which("wrk") if args.generator != "python" else None
    if args.generator == "wrk" and wrk is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    server_pin, load_pin, placement = pinning()
    if wrk:
        version = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
        generator = f"wrk {version.stdout.split()[1]}, 1 thread"
    else:
        generator = "Python asyncio generator (wrk not installed or not chosen)"
    console.print(
        f"{datetime.date.today()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"leafwatch from {Path(create_app.__code__.co_filename).parent}\n"
        f"load: {generator}, {args.concurrency} connections; {placement}\n"
        f"{args.rounds} rounds of {args.duration} s per variant and route"
    )

    with tempfile.TemporaryDirectory(prefix="leafwatch-bench-") as scratch_name:
        scratch = Path(scratch_name)
        (scratch / "report.lua").write_text(WRK_REPORT)
        (scratch / "predict.lua").write_text(WRK_PREDICT)

        def load(url: str, route: str, duration: int) -> Sample:
            if wrk:
                return wrk_load(url, route, duration, args.concurrency, load_pin, scratch)
            return python_load(url, route, duration, args.concurrency, load_pin)

        console.print(f"starting {len(VARIANTS)} servers (migrations, model load)...")
        with servers(list(VARIANTS), scratch, server_pin, load_pin) as urls:
            for name, url in urls.items():
                for route in ROUTES:
                    load(url, route, args.warmup)
                counted = counts_health(url)
                if counted == (name in WITHOUT_LEAFWATCH_METRICS):
                    raise RuntimeError(f"{name}: LeafWatch's request counter {counted=}")
                console.print(f"{name}: {url}, LeafWatch counts its requests: {counted}")
            exports = wait_exports(scratch / "otlp-sink.log")
            console.print(f"OTLP sink: {exports} span exports received during the warm-up")
            samples = measure(urls, load, args)

    console.print()
    for line in [*report(samples), "", *verdicts(samples)]:
        console.print(line, markup=False, highlight=False)
    for (route, name), runs in samples.items():
        if failed := sum(s.failed for s in runs):
            console.print(f"warning: {failed} failed requests on {route}, {name}", style="red")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per variant")
    parser.add_argument("--concurrency", type=int, default=8, help="open connections")
    parser.add_argument("--warmup", type=int, default=2, help="seconds per server and route")
    parser.add_argument(
        "--generator", choices=("auto", "wrk", "python"), default="auto", help="load generator"
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s: a smoke run")
    # Entries of the helper processes: the Python load generator and the OTLP sink.
    parser.add_argument("--python-load", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--otlp-sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.otlp_sink:
        ThreadingHTTPServer(("127.0.0.1", args.otlp_sink), DiscardSpans).serve_forever()
        return
    if args.python_load:
        url, route, duration, concurrency = args.python_load
        sample = asyncio.run(_python_load(url, route, int(duration), int(concurrency)))
        print(json.dumps(asdict(sample)))
        return
    if args.quick:
        args.duration, args.rounds, args.warmup = 3, 2, 1
    # Turn `kill` into an exception too, so the servers are stopped as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(args)
    except KeyboardInterrupt:
        sys.exit("interrupted; every server this run started is stopped")


if __name__ == "__main__":
    main()
