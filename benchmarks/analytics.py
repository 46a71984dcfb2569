"""Benchmark: the usage analytics endpoints on 1,000,000 predictions in PostgreSQL.

Creates a fresh database on the local server, migrates it, fills it in SQL (generate_series) with
1,000,000 predictions from up to 10,000 users over 90 days (a growing user base, a few heavy
users and many light ones, morning peaks, 80% with one of 8 locations) and verdicts on about 10%,
then times GET /api/v1/analytics/usage and /retention (and /quality when that router exists)
through the real app over HTTP, for the default period (30 days) and the whole 90 days. It times
them once on the schema as migrated, then again with the candidate indexes added, and drops the
database at the end. The goal: each answers in under 300 ms.

    .venv/bin/python benchmarks/analytics.py [--predictions 1000000] [--users 10000]
        [--repeats 7] [--admin-dsn postgresql://postgres@127.0.0.1:5432/postgres]
"""

import argparse
import logging
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from leafwatch.api import usage
from leafwatch.app import create_app
from leafwatch.config import Settings
from leafwatch.storage import db
from leafwatch.storage.tables import utcnow

GOAL_MS = 300.0
BATCH = 50_000
DAYS = 90
LOCATIONS = ("Kisumu", "Bungoma", "Kakamega", "Busia", "Meru", "Embu", "Kisii", "Nyeri")
CLASSES = ("Healthy", "Stage1", "Stage2", "Stage3", "Stage4", "Stage5", "Stage6")
# What the queries would use beyond the migrated schema: a covering index that lets the range
# scans read (timestamp, user_id, class, location) without visiting the table.
CANDIDATE_INDEXES = {
    "ix_predictions_timestamp_usage": "CREATE INDEX ix_predictions_timestamp_usage ON predictions "
    "(timestamp) INCLUDE (user_id, predicted_class_name, user_location, id)",
}

# One batch of predictions. The user base grows: user u starts at day 90 * (1 - u / users) before
# now, so a prediction made `age` days ago goes to one of the users started by then, skewed to the
# earliest (u = started * r^2: a few heavy users, many light ones). Ages are uniform over the 90
# days, so the 30-day default period holds a third of the rows. Hours peak in the morning.
INSERT_PREDICTIONS = """
INSERT INTO predictions (id, user_id, user_location, image_path, image_size_kb, image_width,
    image_height, image_hash, predicted_class_id, predicted_class_name, confidence, model_version,
    model_name, inference_time_ms, timestamp, metadata)
SELECT gen_random_uuid(), 'user-' || u, CASE WHEN random() < 0.8
        THEN (%(locations)s::text[])[1 + (u %% 8)] END,
    'images/' || md5(n::text) || '.jpg', 200 + 300 * random(), 1280, 960, md5(n::text),
    c, (%(classes)s::text[])[c + 1], 0.4 + 0.6 * random(), CASE WHEN n %% 10 = 0 THEN '2' ELSE '1'
    END, 'banana_sigatoka_detector', 8 + 4 * random(),
    date_trunc('day', %(now)s::timestamptz - age * interval '1 day')
        + (6 + 13 * power(random(), 1.5)) * interval '1 hour' + random() * interval '1 hour',
    '{}'::json
FROM (
    SELECT n, age, floor(%(users)s::int * (1 - age / %(days)s::int) * power(random(), 2))::int AS u,
        least(6, floor(-ln(1 - random()) * 1.6))::int AS c
    FROM (SELECT n, random() * %(days)s::int AS age
          FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n) AS aged
) AS made
"""
INSERT_FEEDBACK = """
INSERT INTO feedback (id, prediction_id, is_correct, correct_class_id, correct_class_name,
    feedback_source, timestamp)
SELECT gen_random_uuid(), id, ok, CASE WHEN NOT ok THEN (predicted_class_id + 1) %% 7 END,
    CASE WHEN NOT ok THEN (%(classes)s::text[])[(predicted_class_id + 1) %% 7 + 1] END,
    (ARRAY['mobile_app', 'web', 'expert_review'])[1 + floor(random() * 3)::int],
    timestamp + random() * interval '2 days'
FROM (SELECT id, predicted_class_id, timestamp, random() < 0.85 AS ok FROM predictions
      WHERE random() < 0.1) AS judged
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


def time_endpoints(url: str, *, repeats: int, var_dir: Path) -> dict[str, list[float]]:
    """Milliseconds of each endpoint and period, over HTTP through the real app."""
    settings = Settings(
        var_dir=var_dir,
        database_url=url,
        migrate_on_start=False,
        drift_interval_seconds=0,
        access_log=False,
        log_level="warning",
        log_file=str(var_dir / "app.log"),
    )
    app = create_app(settings)
    paths = {getattr(route, "path", "") for route in app.routes}
    if "/api/v1/analytics/usage" not in paths:
        app.include_router(usage.router)
    try:
        from leafwatch.api import analytics

        if "/api/v1/analytics/quality" not in paths:
            app.include_router(analytics.router)
        has_quality = True
    except ImportError:
        has_quality = False
    now = utcnow()
    whole = {"from": (now - timedelta(days=DAYS)).date().isoformat()}
    cases = {
        "usage, 30 days": ("/api/v1/analytics/usage", {}),
        "usage, 90 days": ("/api/v1/analytics/usage", whole),
        "retention, 30 days": ("/api/v1/analytics/retention", {}),
        "retention, 90 days": ("/api/v1/analytics/retention", whole),
    }
    if has_quality:
        cases["quality, 1h/24h/7d/30d"] = ("/api/v1/analytics/quality", {})
        cases["quality, 90 days"] = ("/api/v1/analytics/quality", whole)
    timings: dict[str, list[float]] = {}
    with TestClient(app) as client:
        for name, (path, params) in cases.items():
            answer = client.get(path, params=params)  # warm: plans and caches, as in service
            timings[name] = []
            if answer.status_code != 200:  # another part's endpoint may be unfinished: go on
                Console(stderr=True).print(f"{name}: {answer.status_code} {answer.text[:200]}")
                continue
            for _ in range(repeats):
                began = time.perf_counter()
                client.get(path, params=params).raise_for_status()
                timings[name].append((time.perf_counter() - began) * 1000)
    return timings


def table(title: str, timings: dict[str, list[float]]) -> Table:
    """Median and max per endpoint, against the goal."""
    out = Table(title=title)
    for column in ("endpoint", "median ms", "max ms", f"< {GOAL_MS:.0f} ms"):
        out.add_column(column, justify="left" if column == "endpoint" else "right")
    for name, values in timings.items():
        if not values:
            out.add_row(name, "-", "-", "[red]failed[/red]")
            continue
        worst = max(values)
        out.add_row(
            name,
            f"{statistics.median(values):.0f}",
            f"{worst:.0f}",
            "yes" if worst < GOAL_MS else "[red]no[/red]",
        )
    return out


def main() -> None:
    """Fill, time without and with the candidate indexes, drop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres", help="Server."
    )
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
        console.print(f"predictions, verdicts, users: {counts}")
        with tempfile.TemporaryDirectory() as var:
            plain = time_endpoints(url, repeats=options.repeats, var_dir=Path(var))
            console.print(table("schema as migrated", plain))
            with psycopg.connect(dsn, autocommit=True) as connection:
                for statement in CANDIDATE_INDEXES.values():
                    connection.execute(statement)
                connection.execute("VACUUM ANALYZE predictions")
            indexed = time_endpoints(url, repeats=options.repeats, var_dir=Path(var))
            console.print(table(f"with {', '.join(CANDIDATE_INDEXES)}", indexed))
    finally:
        with psycopg.connect(options.admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
