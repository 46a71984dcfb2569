"""Benchmark: the analytics endpoints on 1,000,000 predictions in PostgreSQL, with daily rollups.

Creates a fresh database on the local server, migrates it, fills it in SQL (generate_series) with
1,000,000 predictions from up to 10,000 users over 90 days (a growing user base, a few heavy
users and many light ones, morning peaks, 80% with one of 8 locations) and verdicts on about 10%.
The rows go in in time order, as a service writes them. Then it times the rollup job: the first
run over all days but yesterday, the nightly run that adds yesterday, a run with nothing new,
and a run after late rows (predictions replayed onto five past days, verdicts on week-old
predictions). Last, it times GET /api/v1/analytics/usage, /retention and /quality through the
real app over HTTP, for the default period or windows and the whole 90 days, and drops the
database. The goal: each endpoint answers in under 300 ms (median).

    .venv/bin/python benchmarks/analytics.py [--predictions 1000000] [--users 10000]
        [--repeats 7] [--admin-dsn postgresql://postgres@127.0.0.1:5432/postgres] [--keep]
"""

import argparse
import logging
import os
import statistics
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.storage import db, rollups
from leafwatch.storage.tables import utcnow

GOAL_MS = 300.0
BATCH = 50_000
DAYS = 90
LOCATIONS = ("Kisumu", "Bungoma", "Kakamega", "Busia", "Meru", "Embu", "Kisii", "Nyeri")
CLASSES = ("Healthy", "Stage1", "Stage2", "Stage3", "Stage4", "Stage5", "Stage6")
LATE_PREDICTIONS = 1_000
LATE_VERDICTS = 1_000

# One batch of predictions, oldest first: row n of `total` is made `age` days before now, age
# falling with n, so the table's physical order follows time as in service. The user base grows:
# user u starts at day 90 * (1 - u / users) before now, so a prediction made `age` days ago goes
# to one of the users started by then, skewed to the earliest (u = started * r^2: a few heavy
# users, many light ones). Ages are uniform over the 90 days, so the 30-day default period holds
# a third of the rows. Hours peak in the morning.
INSERT_PREDICTIONS = """
INSERT INTO predictions (id, user_id, user_location, image_path, image_size_kb, image_width,
    image_height, image_hash, predicted_class_id, predicted_class_name, confidence, model_version,
    model_name, inference_time_ms, timestamp, metadata)
SELECT gen_random_uuid(), 'user-' || u, CASE WHEN random() < 0.8
        THEN (%(locations)s::text[])[1 + (u %% 8)] END,
    'images/' || md5(n::text) || '.jpg', 200 + 300 * random(), 1280, 960, md5(n::text),
    c, (%(classes)s::text[])[c + 1], 0.4 + 0.6 * random(), CASE WHEN n %% 10 = 0 THEN '2' ELSE '1'
    END, 'banana_sigatoka_detector', 8 + 4 * random(), at, '{}'::json
FROM (
    SELECT n, age, floor(%(users)s::int * (1 - age / %(days)s::int) * power(random(), 2))::int AS u,
        least(6, floor(-ln(1 - random()) * 1.6))::int AS c,
        date_trunc('day', %(now)s::timestamptz - age * interval '1 day')
            + (6 + 13 * power(random(), 1.5)) * interval '1 hour' + random() * interval '1 hour'
            AS at
    FROM (SELECT n, %(days)s::int * (1 - (n + random()) / %(total)s::bigint) AS age
          FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n) AS aged
) AS made
ORDER BY at
"""
INSERT_FEEDBACK = """
INSERT INTO feedback (id, prediction_id, is_correct, correct_class_id, correct_class_name,
    feedback_source, timestamp)
SELECT gen_random_uuid(), id, ok, CASE WHEN NOT ok THEN (predicted_class_id + 1) %% 7 END,
    CASE WHEN NOT ok THEN (%(classes)s::text[])[(predicted_class_id + 1) %% 7 + 1] END,
    (ARRAY['mobile_app', 'web', 'expert_review'])[1 + floor(random() * 3)::int],
    timestamp + random() * interval '2 days'
FROM (SELECT id, predicted_class_id, timestamp, random() < 0.85 AS ok FROM predictions
      WHERE random() < 0.1 ORDER BY timestamp) AS judged
"""
# Late rows: predictions replayed onto five past days (a spool after an outage), and verdicts
# given now on predictions made a week ago and more.
REPLAY_PREDICTIONS = """
INSERT INTO predictions (id, user_id, user_location, image_path, image_size_kb, image_width,
    image_height, image_hash, predicted_class_id, predicted_class_name, confidence, model_version,
    model_name, inference_time_ms, timestamp, metadata)
SELECT gen_random_uuid(), user_id, user_location, image_path, image_size_kb, image_width,
    image_height, image_hash, predicted_class_id, predicted_class_name, confidence, model_version,
    model_name, inference_time_ms, timestamp + interval '1 second', metadata
FROM predictions
WHERE timestamp >= %(now)s::timestamptz - interval '15 days'
    AND timestamp < %(now)s::timestamptz - interval '10 days'
ORDER BY random() LIMIT %(late)s
"""
LATE_FEEDBACK = """
INSERT INTO feedback (id, prediction_id, is_correct, feedback_source, timestamp)
SELECT gen_random_uuid(), id, true, 'expert_review', %(now)s::timestamptz
FROM predictions
WHERE timestamp >= %(now)s::timestamptz - interval '9 days'
    AND timestamp < %(now)s::timestamptz - interval '7 days'
ORDER BY random() LIMIT %(verdicts)s
"""


def fill(dsn: str, *, predictions: int, users: int, console: Console) -> None:
    """Insert the predictions in batches (with a progress bar), then the verdicts."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    now = utcnow()
    with (
        psycopg.connect(dsn, autocommit=True) as connection,
        Progress(*columns, console=console) as progress,
    ):
        task = progress.add_task("predictions", total=predictions)
        for first in range(0, predictions, BATCH):
            last = min(first + BATCH, predictions) - 1
            parameters = {
                "locations": list(LOCATIONS),
                "classes": list(CLASSES),
                "now": now,
                "days": DAYS,
                "users": users,
                "total": predictions,
                "first": first,
                "last": last,
            }
            connection.execute(INSERT_PREDICTIONS, parameters)
            progress.advance(task, last - first + 1)
        verdicts = progress.add_task("verdicts on ~10%, then VACUUM ANALYZE", total=2)
        connection.execute(INSERT_FEEDBACK, {"classes": list(CLASSES)})
        progress.advance(verdicts)
        # A production table is vacuumed by autovacuum; do it now so plans see real statistics.
        connection.execute("VACUUM ANALYZE predictions")
        connection.execute("VACUUM ANALYZE feedback")
        progress.advance(verdicts)


def time_rollups(url: str, dsn: str) -> dict[str, tuple[int, float]]:
    """Days rolled up and seconds, for the first run, the nightly one, none new, late rows."""
    engine = db.make_engine(url)
    sessions = db.make_sessionmaker(engine)
    today = utcnow().date()
    runs: dict[str, tuple[int, float]] = {}
    try:
        for name, day in (
            ("first run: every day but yesterday", today - timedelta(days=1)),
            ("nightly run: yesterday", today),
            ("nothing new", today),
        ):
            run = rollups.roll_up(sessions, today=day)
            runs[name] = (len(run.days), run.seconds)
        with psycopg.connect(dsn, autocommit=True) as connection:
            parameters = {"now": utcnow(), "late": LATE_PREDICTIONS, "verdicts": LATE_VERDICTS}
            connection.execute(REPLAY_PREDICTIONS, parameters)
            connection.execute(LATE_FEEDBACK, parameters)
        run = rollups.roll_up(sessions, today=today)
        runs[f"after late rows ({LATE_PREDICTIONS} predictions, {LATE_VERDICTS} verdicts)"] = (
            len(run.days),
            run.seconds,
        )
    finally:
        engine.dispose()
    return runs


def rollup_table(runs: dict[str, tuple[int, float]]) -> Table:
    """Days and seconds per rollup run."""
    out = Table(title="the rollup job")
    for column in ("run", "days rolled up", "seconds"):
        out.add_column(column, justify="left" if column == "run" else "right")
    for name, (days, seconds) in runs.items():
        out.add_row(name, str(days), f"{seconds:.2f}")
    return out


def time_endpoints(url: str, *, repeats: int, var_dir: Path) -> dict[str, list[float]]:
    """Milliseconds of each endpoint and period, over HTTP through the real app."""
    settings = Settings(
        var_dir=var_dir,
        database_url=url,
        migrate_on_start=False,
        drift_interval_seconds=0,
        performance_interval_seconds=0,
        rollup_interval_seconds=0,  # the runs above did it; timings must not include one
        access_log=False,
        log_level="warning",
        log_file=str(var_dir / "app.log"),
    )
    now = utcnow()
    whole = {"from": (now - timedelta(days=DAYS)).date().isoformat()}
    cases = {
        "usage, 30 days": ("/api/v1/analytics/usage", {}),
        "usage, 90 days": ("/api/v1/analytics/usage", whole),
        "retention, 30 days": ("/api/v1/analytics/retention", {}),
        "retention, 90 days": ("/api/v1/analytics/retention", whole),
        "quality, 1h/24h/7d/30d": ("/api/v1/analytics/quality", {}),
        "quality, 90 days": ("/api/v1/analytics/quality", whole),
    }
    timings: dict[str, list[float]] = {}
    with TestClient(create_app(settings)) as client:
        for name, (path, params) in cases.items():
            client.get(path, params=params).raise_for_status()  # warm: plans and caches
            timings[name] = []
            for _ in range(repeats):
                began = time.perf_counter()
                client.get(path, params=params).raise_for_status()
                timings[name].append((time.perf_counter() - began) * 1000)
    return timings


def endpoint_table(timings: dict[str, list[float]]) -> Table:
    """Median and max per endpoint, against the goal."""
    out = Table(title="endpoints, read through the rollups")
    for column in ("endpoint", "median ms", "max ms", f"median < {GOAL_MS:.0f} ms"):
        out.add_column(column, justify="left" if column == "endpoint" else "right")
    for name, values in timings.items():
        median = statistics.median(values)
        out.add_row(
            name,
            f"{median:.0f}",
            f"{max(values):.0f}",
            "yes" if median < GOAL_MS else "[red]no[/red]",
        )
    return out


def main() -> None:
    """Fill, roll up (timed), time the endpoints, drop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres", help="Server."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    options = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    console = Console()
    name = f"leafwatch_bench_{uuid.uuid4().hex[:8]}"
    base = options.admin_dsn.rsplit("/", 1)[0]
    dsn, url = f"{base}/{name}", f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://")
    with psycopg.connect(options.admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
        began = time.perf_counter()
        fill(dsn, predictions=options.predictions, users=options.users, console=console)
        console.print(f"filled in {time.perf_counter() - began:.0f} s")
        with psycopg.connect(dsn) as connection:
            counts = connection.execute(
                "SELECT (SELECT count(*) FROM predictions), (SELECT count(*) FROM feedback),"
                " (SELECT count(DISTINCT user_id) FROM predictions)"
            ).fetchone()
        console.print(f"predictions, verdicts, users: {counts} on {date.today().isoformat()}")
        console.print(rollup_table(time_rollups(url, dsn)))
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")  # as autovacuum would after the rollup's writes
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        console.print(f"load average (1, 5, 15 min) before the endpoints: {load}")
        with tempfile.TemporaryDirectory() as var:
            timings = time_endpoints(url, repeats=options.repeats, var_dir=Path(var))
        console.print(endpoint_table(timings))
    finally:
        if options.keep:
            console.print(f"kept: {url}")
        else:
            with psycopg.connect(options.admin_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
