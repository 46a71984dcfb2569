"""Benchmark: a steady stream of predictions and feedback against 2 workers, for 10 minutes.

Starts `leafwatch serve --workers 2` on a fresh PostgreSQL database (dropped at the end), then sends
predictions at a fixed rate (open loop: each request leaves at its scheduled time whether or not
the previous ones have been answered, so a slow server shows as latency, not as a slower
generator) and a verdict for a share of the answered predictions. Every upload is a rendered leaf
made unique by a JPEG comment segment, so the image store writes each one.

It reports throughput, p50/p95/p99 latency, the count of 5xx and of failed connections, the
resident memory of the worker processes after the warm-up and at the end, and the number of metric
series /metrics exposes (from a later moment: see SERIES_FROM_S) and at the end. Goals (issue 9):
no 5xx, memory growth under 10%, series count flat.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 20] [--feedback-share 0.25]
        [--admin-dsn postgresql://postgres@127.0.0.1:5432/postgres]
"""

import argparse
import asyncio
import datetime
import itertools
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from leafwatch.model.labels import CLASS_NAMES
from leafwatch.model.synth import Nuisance, leaf_jpeg
from leafwatch.runtime import USAGE_PERIOD_S
from leafwatch.simulate.traffic import unique_jpeg
from leafwatch.stack import free_port

WARM_UP_S = 60.0  # memory is read after this much traffic, when the processes have warmed up
# Series are counted from a later moment: figures computed from the database every few minutes
# (usage) or by a job (drift) appear at their first refresh that has data, once, and that is not
# growth. Drift runs every DRIFT_EVERY_S here (hourly by default) so that it has run by then.
SERIES_FROM_S = USAGE_PERIOD_S + 30.0
DRIFT_EVERY_S = 120
SERIALS = itertools.count()
POOL = 70  # leaves rendered once (10 per class) and sent over and over, each time made unique


@dataclass
class Tally:
    """What the load generator saw."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    feedback_sent: int = 0
    feedback_statuses: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


@dataclass(frozen=True)
class Snapshot:
    """The server's footprint at one moment."""

    at_s: float
    rss_mib: float
    series: frozenset[str]


def leaf_pool() -> list[tuple[str, bytes]]:
    """Phone-sized leaves of every class, rendered once."""
    nuisance = Nuisance(resolution=((1024, 768),))
    return [
        (CLASS_NAMES[class_id], leaf_jpeg(class_id, seed=11, index=index, nuisance=nuisance))
        for class_id in range(len(CLASS_NAMES))
        for index in range(POOL // len(CLASS_NAMES))
    ]


def worker_pids(parent: int) -> list[int]:
    """The processes `leafwatch serve` started (uvicorn's workers), and itself."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [parent, *map(int, children)]


def rss_mib(pids: list[int]) -> float:
    """Resident memory of these processes together, from /proc."""
    total_kib = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def series(url: str) -> frozenset[str]:
    """The series /metrics exposes: each sample's name and labels."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return frozenset(
        line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")
    )


def snapshot(url: str, parent: int, started: float) -> Snapshot:
    """Memory and series now."""
    return Snapshot(time.monotonic() - started, rss_mib(worker_pids(parent)), series(url))


async def predict_once(
    client: httpx.AsyncClient,
    leaf: tuple[str, bytes],
    tally: Tally,
    feedback_share: float,
    rng: random.Random,
) -> None:
    """One prediction, and a verdict on it for a share of them."""
    truth, image = leaf
    unique = unique_jpeg(image, next(SERIALS))
    user = f"farmer-{rng.randrange(500)}"
    started = time.perf_counter()
    try:
        response = await client.post(
            "/api/v1/predict",
            files={"file": ("leaf.jpg", unique, "image/jpeg")},
            data={"user_id": user},
        )
    except httpx.HTTPError:
        tally.failures += 1
        return
    tally.latencies_ms.append((time.perf_counter() - started) * 1000)
    tally.count(response.status_code)
    if response.status_code != 200 or rng.random() >= feedback_share:
        return
    body = response.json()
    predicted = body["predicted_class_name"]
    verdict = {"prediction_id": body["prediction_id"], "is_correct": predicted == truth}
    if predicted != truth:
        verdict["correct_class_name"] = truth
    try:
        answer = await client.post("/api/v1/feedback/submit", json=verdict)
    except httpx.HTTPError:
        tally.failures += 1
        return
    tally.feedback_sent += 1
    code = answer.status_code
    tally.feedback_statuses[code] = tally.feedback_statuses.get(code, 0) + 1


async def drive(
    url: str,
    *,
    parent: int,
    seconds: float,
    rate: float,
    feedback_share: float,
    console: Console,
) -> tuple[Tally, list[Snapshot], float]:
    """Send predictions at `rate` per second for `seconds`; snapshot after warm-up and at end."""
    pool = leaf_pool()
    series(url)  # the scrape's own request series exist from the first scrape on
    rng = random.Random(5)
    tally = Tally()
    snapshots: list[Snapshot] = []
    tasks: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        started = time.monotonic()
        sent = 0
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("soak", total=seconds, status="")
            while (elapsed := time.monotonic() - started) < seconds:
                due = int(elapsed * rate) + 1
                while sent < due:
                    task = asyncio.create_task(
                        predict_once(client, pool[sent % len(pool)], tally, feedback_share, rng)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    sent += 1
                due_snapshots = (WARM_UP_S, SERIES_FROM_S)
                if len(snapshots) < 2 and elapsed >= due_snapshots[len(snapshots)]:
                    snapshots.append(await asyncio.to_thread(snapshot, url, parent, started))
                server_errors = sum(n for code, n in tally.statuses.items() if code >= 500)
                progress.update(
                    bar,
                    completed=elapsed,
                    status=f"{sent} sent, {len(tasks)} in flight, {server_errors} 5xx",
                )
                await asyncio.sleep(min(0.05, 1 / rate))
            await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
        snapshots.append(await asyncio.to_thread(snapshot, url, parent, started))
    return tally, snapshots, elapsed


def serve(dsn: str, var_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`leafwatch serve --workers 2` on the given database, once /ready answers."""
    port = free_port()
    env = {
        **os.environ,
        "LEAFWATCH_VAR_DIR": str(var_dir),
        "LEAFWATCH_DATABASE_URL": dsn,
        "LEAFWATCH_MIGRATE_ON_START": "true",
        "LEAFWATCH_LOG_FILE": str(var_dir / "app.log"),
        "LEAFWATCH_LOG_FORMAT": "json",
        "LEAFWATCH_DRIFT_INTERVAL_SECONDS": str(DRIFT_EVERY_S),
    }
    with (var_dir / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "leafwatch", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the service did not become ready; see {var_dir / 'serve.log'}")


def report(
    tally: Tally, snapshots: list[Snapshot], elapsed: float, args: argparse.Namespace
) -> None:
    """The result as a markdown table, and the verdict against each goal."""
    first, counted, last = snapshots[0], snapshots[-2], snapshots[-1]
    latencies = np.asarray(tally.latencies_ms)
    p50, p95, p99 = (float(np.percentile(latencies, q)) for q in (50, 95, 99))
    answered = len(tally.latencies_ms)
    server_errors = sum(n for code, n in tally.statuses.items() if code >= 500)
    feedback_errors = sum(n for code, n in tally.feedback_statuses.items() if code >= 500)
    growth = (last.rss_mib - first.rss_mib) / first.rss_mib
    print(
        f"Run on {datetime.date.today().isoformat()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; {args.minutes:g} min at {args.rate:g} predictions/s, "
        f"a verdict on {args.feedback_share:.0%} of them; 2 workers, PostgreSQL:"
    )
    print()
    print("| figure | value |")
    print("|---|---:|")
    print(f"| predictions answered | {answered:,} ({answered / elapsed:.1f}/s) |")
    print(f"| statuses | {', '.join(f'{k}: {v:,}' for k, v in sorted(tally.statuses.items()))} |")
    print(f"| verdicts sent | {tally.feedback_sent:,} ({feedback_errors} 5xx) |")
    print(f"| failed connections | {tally.failures} |")
    print(f"| latency p50 / p95 / p99 ms | {p50:.1f} / {p95:.1f} / {p99:.1f} |")
    print(f"| latency mean ms | {statistics.fmean(tally.latencies_ms):.1f} |")
    print(
        f"| resident memory, MiB (after {first.at_s:.0f} s, at {last.at_s:.0f} s) | "
        f"{first.rss_mib:.0f} -> {last.rss_mib:.0f} ({growth:+.1%}) |"
    )
    print(
        f"| metric series (after {counted.at_s:.0f} s, at {last.at_s:.0f} s) | "
        f"{len(counted.series):,} -> {len(last.series):,} |"
    )
    print()
    new = sorted(last.series - counted.series)
    if new:
        # Growth from label values first seen late (a class, a status) is bounded; an id is not.
        print(f"Series new at the end ({len(new)}): " + ", ".join(f"`{name}`" for name in new))
        print()
    print(f"- no 5xx: {'met' if server_errors + feedback_errors == 0 else 'NOT met'}")
    # Not a goal of the issue, but a soak of refused uploads would measure nothing.
    refused = answered - tally.statuses.get(200, 0)
    print(f"- every prediction answered 200: {'yes' if refused == 0 else f'NO, {refused} not'}")
    print(f"- memory growth under 10%: {'met' if growth < 0.10 else 'NOT met'} ({growth:+.1%})")
    flat = len(last.series) == len(counted.series)
    print(f"- series flat: {'met' if flat else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="predictions per second")
    parser.add_argument("--feedback-share", type=float, default=0.25)
    parser.add_argument(
        "--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres", help="to create it"
    )
    args = parser.parse_args()
    if args.minutes * 60 <= SERIES_FROM_S:
        parser.error(f"--minutes must be longer than the {SERIES_FROM_S:g} s warm-up")
    console = Console(stderr=True)
    name = f"leafwatch_soak_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = args.admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        with tempfile.TemporaryDirectory(prefix="leafwatch-soak-") as tmp:
            process, url = serve(f"{base}/{name}", Path(tmp))
            try:
                tally, snapshots, elapsed = asyncio.run(
                    drive(
                        url,
                        parent=process.pid,
                        seconds=args.minutes * 60,
                        rate=args.rate,
                        feedback_share=args.feedback_share,
                        console=console,
                    )
                )
            finally:
                process.terminate()
                process.wait(timeout=30)
            report(tally, snapshots, elapsed, args)
    finally:
        with psycopg.connect(args.admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
