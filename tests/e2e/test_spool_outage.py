"""Nothing accepted is lost: the real PostgreSQL stops mid-stream, a worker dies mid-request.

The test runs its own throwaway PostgreSQL server (initdb, pg_ctl: the shared one is left alone),
and `leafwatch serve --workers 2` on it. Clients send predictions and feedback all along; the
server is stopped, a worker with spooled records is killed while requests are in flight, the
server starts again, and every prediction id a client received and every verdict answered 201 is
in the database exactly once.
"""

import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from leafwatch.model.labels import CLASS_NAMES
from leafwatch.stack import free_port
from leafwatch.storage import db
from tests.conftest import image_bytes
from tests.scrape import total
from tests.servers import eventually, leafwatch_serve

pytestmark = pytest.mark.slow

PG_BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


class ThrowawayPostgres:
    """A PostgreSQL server of its own, in a temporary directory, on a free port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.bin = PG_BINARIES[-1].parent

    def run(self, *command: str) -> None:
        """Run a PostgreSQL tool; as the postgres user when this is root (initdb refuses root)."""
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self.run(
            str(self.bin / "initdb"),
            f"--pgdata={self.root / 'data'}",
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        # No fsync: what is on trial is LeafWatch's spool, not PostgreSQL's durability.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(
            str(self.bin / "pg_ctl"),
            f"--pgdata={self.root / 'data'}",
            f"--log={self.root / 'postgres.log'}",
            f"--options={options}",
            "--wait",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self.run(str(self.bin / "pg_ctl"), f"--pgdata={self.root / 'data'}", "-m", mode, "stop")

    def dsn(self, database: str) -> str:
        """The libpq connection string, for psycopg."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL LeafWatch takes."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


@contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A started server with an empty, migrated `leafwatch` database; removed afterwards."""
    if not PG_BINARIES:
        pytest.fail("PostgreSQL's server binaries are not in /usr/lib/postgresql/*/bin")
    root = Path(tempfile.mkdtemp(prefix="leafwatch-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = ThrowawayPostgres(root)
    try:
        server.init()
        server.start()
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as admin:
            admin.execute("CREATE DATABASE leafwatch")
        engine = db.make_engine(server.url("leafwatch"))
        db.upgrade(engine)
        engine.dispose()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


class Clients:
    """Clients sending predictions and verdicts until stopped; what the server acknowledged."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.predictions: dict[str, str] = {}  # acknowledged id -> predicted class
        self.verdicts: set[str] = set()  # verdict ids answered 201
        self.server_errors: list[str] = []
        self.dropped = 0  # requests whose connection broke (the killed worker's)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.send, args=(seed,)) for seed in range(3)]

    def __enter__(self) -> "Clients":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def wait_for(self, predictions: int, timeout: float = 30) -> None:
        """Until this many more predictions are acknowledged."""
        target = len(self.predictions) + predictions
        assert eventually(lambda: len(self.predictions) >= target, timeout), self.server_errors

    def send(self, seed: int) -> None:
        rng = random.Random(seed)
        # A new connection per request, so the kernel spreads them over both workers.
        with httpx.Client(base_url=self.url, timeout=30, headers={"Connection": "close"}) as http:
            while not self.stopping.is_set():
                try:
                    self.predict(http, rng)
                    self.judge(http, rng)
                except httpx.TransportError:
                    with self.lock:
                        self.dropped += 1

    def predict(self, http: httpx.Client, rng: random.Random) -> None:
        image = image_bytes(size=(rng.randint(160, 400), rng.randint(120, 300)))
        answer = http.post(
            "/api/v1/predict",
            files={"file": ("leaf.jpg", image, "image/jpeg")},
            data={"user_id": f"farmer-{rng.randint(1, 5)}"},
        )
        self.check(answer, 200)
        body = answer.json()
        with self.lock:
            self.predictions[body["prediction_id"]] = body["predicted_class_name"]

    def judge(self, http: httpx.Client, rng: random.Random) -> None:
        with self.lock:
            prediction_id, predicted = rng.choice(sorted(self.predictions.items()))
        verdict: dict[str, object] = {"prediction_id": prediction_id, "is_correct": True}
        if rng.random() < 0.4:
            wrong = [name for name in CLASS_NAMES if name != predicted]
            verdict.update(is_correct=False, correct_class_name=rng.choice(wrong))
        answer = http.post(
            "/api/v1/feedback/submit", json={**verdict, "feedback_source": "mobile_app"}
        )
        self.check(answer, 201)
        with self.lock:
            self.verdicts.add(answer.json()["feedback_id"])

    def check(self, answer: httpx.Response, expected: int) -> None:
        if answer.status_code != expected:
            with self.lock:
                self.server_errors.append(f"{answer.status_code} {answer.text[:300]}")
            raise AssertionError(answer.text)


def spool_files(directory: Path) -> dict[int, int]:
    """Records waiting in each process's spool file, by pid."""
    depths = {}
    for path in directory.glob("*.spool"):
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as spool:
            depths[int(path.name.split("-")[0])] = spool.execute(
                "SELECT count(*) FROM records"
            ).fetchone()[0]
    return depths


def stored_ids(server: ThrowawayPostgres, table: str) -> list[str]:
    with psycopg.connect(server.dsn("leafwatch")) as connection:
        return [str(row[0]) for row in connection.execute(f"SELECT id FROM {table}")]


def test_a_database_outage_and_a_killed_worker_lose_no_acknowledged_record(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "var" / "spool"
    with throwaway_postgres() as server:
        env = {
            "LEAFWATCH_DATABASE_URL": server.url("leafwatch"),
            "LEAFWATCH_SPOOL_RETRY_SECONDS": "0.5",
            "LEAFWATCH_MODEL_POLL_SECONDS": "0",
            "LEAFWATCH_ACCESS_LOG": "false",
        }
        with leafwatch_serve(tmp_path, "--workers", "2", env=env) as (base, _process):
            with Clients(base) as clients:
                clients.wait_for(10)
                server.stop("fast")
                clients.wait_for(15)
                ready = httpx.get(f"{base}/ready")
                assert ready.status_code == 200
                assert ready.json()["status"] == "degraded", ready.json()
                # A worker with records in its spool, killed while the clients' requests run.
                depths = eventually(lambda: {p: n for p, n in spool_files(spool).items() if n})
                assert depths, "nothing was spooled"
                victim = max(depths, key=lambda pid: depths[pid])
                os.kill(victim, signal.SIGKILL)
                clients.wait_for(10)
                server.start()
                clients.wait_for(10)
            assert clients.server_errors == []
            acknowledged, verdicts = set(clients.predictions), clients.verdicts

            def drained() -> bool:
                return total(httpx.get(f"{base}/metrics").text, "spool_depth") == 0

            assert eventually(drained, 30), spool_files(spool)
            ready = httpx.get(f"{base}/ready").json()
            assert (ready["status"], ready["spool_depth"]) == ("ready", 0), ready
            left = spool_files(spool)
        predictions = stored_ids(server, "predictions")
        feedback = stored_ids(server, "feedback")
    assert acknowledged - set(predictions) == set(), "acknowledged predictions not stored"
    assert verdicts - set(feedback) == set(), "verdicts answered 201 not stored"
    assert len(predictions) == len(set(predictions)), "a prediction is stored twice"
    assert len(feedback) == len(set(feedback)), "a verdict is stored twice"
    assert victim not in left, "the killed worker's file was replayed and removed"
    assert not any(left.values()), left
    log = (tmp_path / "logs" / "app.log").read_text()
    assert "spooled record rejected at replay" not in log
    assert "orphaned spool file replayed and removed" in log
    print(
        f"{len(acknowledged)} predictions and {len(verdicts)} verdicts acknowledged, "
        f"{clients.dropped} requests dropped by the killed worker"
    )
