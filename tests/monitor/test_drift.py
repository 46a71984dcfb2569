"""Drift runs over stored features, on both databases: quiet without drift, loud with it."""

import uuid
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from leafwatch.config import Settings
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.model.registry import LocalModelRegistry, bundled_model
from leafwatch.monitor.drift import DriftOptions, latest_report, run_drift
from leafwatch.monitor.features import FEATURES, IMAGE_FORMATS
from leafwatch.monitor.reference import FeatureSample
from leafwatch.service.drift import run_for_model
from leafwatch.storage import db
from leafwatch.storage.tables import Prediction, PredictionFeatureRow, utcnow

BUNDLED = FeatureSample.load(bundled_model()[0].with_name("reference.npz"))


def half(sample: FeatureSample, which: int) -> FeatureSample:
    """Every other row: two independent samples of the same distribution."""
    rows = slice(which, None, 2)
    return FeatureSample(
        values={name: column[rows] for name, column in sample.values.items()},
        classes=sample.classes[rows],
        formats=sample.formats[rows],
        embeddings=sample.embeddings[rows],
    )


REFERENCE, SAME = half(BUNDLED, 0), half(BUNDLED, 1)


def store(
    session: Session, sample: FeatureSample, *, version: str = "1", age: timedelta = timedelta()
) -> None:
    """Insert predictions with these features, made `age` ago."""
    now = utcnow() - age
    for row in range(len(sample)):
        prediction_id = uuid.uuid4()
        class_id = int(sample.classes[row])
        session.add(
            Prediction(
                id=prediction_id,
                user_id="farmer-1",
                image_path="x",
                image_size_kb=1.0,
                image_width=1,
                image_height=1,
                image_hash="0" * 64,
                predicted_class_id=class_id,
                predicted_class_name=CLASS_NAMES[class_id],
                confidence=float(sample.values["confidence"][row]),
                model_version=version,
                model_name="m",
                inference_time_ms=1.0,
                timestamp=now,
            )
        )
        session.flush()
        session.add(
            PredictionFeatureRow(
                prediction_id=prediction_id,
                timestamp=now,
                model_version=version,
                image_format=IMAGE_FORMATS[int(sample.formats[row])],
                predicted_class=class_id,
                embedding=sample.embeddings[row].astype("<f4").tobytes(),
                **{name: float(sample.values[name][row]) for name in FEATURES},
            )
        )
    session.commit()


def darker(sample: FeatureSample, factor: float = 0.7) -> FeatureSample:
    values = dict(sample.values)
    for name in ("brightness_mean", "red_mean", "green_mean", "blue_mean"):
        values[name] = values[name] * factor
    return replace(sample, values=values)


@pytest.fixture
def engine(database_url: str) -> Engine:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    return engine


OPTIONS = DriftOptions(window=timedelta(hours=24), alpha=0.05, min_samples=200, persistence=2)


def run(session: Session, **changes: Any) -> Any:
    arguments: dict[str, Any] = {
        "reference": REFERENCE,
        "reference_source": "model",
        "model_version": "1",
        "options": OPTIONS,
    }
    return run_drift(session, **(arguments | changes))


def test_a_window_like_the_reference_is_not_drift(engine: Engine) -> None:
    with Session(engine) as session:
        store(session, SAME)
        report = run(session)
    assert report.status == "ok"
    assert report.current_size == len(SAME)
    assert report.scores == dict.fromkeys(report.scores, 0.0)
    assert not [f["name"] for f in report.details["features"] if f["drifted"]]
    engine.dispose()


def test_darker_photos_are_drift_in_brightness_and_colour(engine: Engine) -> None:
    with Session(engine) as session:
        store(session, darker(SAME))
        report = run(session)
    assert report.status == "drift"
    drifted = {f["name"]: f["direction"] for f in report.details["features"] if f["drifted"]}
    assert drifted["brightness_mean"] == "lower"
    assert {"red_mean", "green_mean"} <= set(drifted)
    assert "width" not in drifted
    assert 0 < report.scores["image_statistics"] <= 1
    engine.dispose()


def test_only_the_window_and_the_version_count(engine: Engine) -> None:
    with Session(engine) as session:
        store(session, darker(SAME), age=timedelta(hours=30))  # before the window
        store(session, darker(SAME), version="2")  # another version's traffic
        store(session, SAME)
        report = run(session)
    assert report.current_size == len(SAME)
    assert report.status == "ok"
    engine.dispose()


def test_too_few_predictions_say_so_instead_of_scoring(engine: Engine) -> None:
    with Session(engine) as session:
        store(session, half(half(half(SAME, 0), 0), 0))  # 131 rows
        report = run(session)
    assert report.status == "not_enough_data"
    assert report.scores == dict.fromkeys(report.scores)
    assert not report.drifted
    engine.dispose()


def test_the_latest_report_by_a_moment_is_the_last_run_that_had_ended_by_then(
    engine: Engine,
) -> None:
    with Session(engine) as session:
        store(session, half(half(half(SAME, 0), 0), 0))
        now = utcnow()
        first = run(session, now=now - timedelta(minutes=10))
        second = run(session, now=now - timedelta(minutes=5))
        second.seconds = 2.0  # started 5 min ago, stored 2 s later
        session.commit()
        ended = second.run_at + timedelta(seconds=2)

        def latest(moment: Any = None) -> int | None:
            report = latest_report(session, finished_by=moment)
            return None if report is None else report.id

        assert latest() == second.id
        assert latest(ended) == second.id
        assert latest(ended - timedelta(milliseconds=1)) == first.id  # still running then
        assert latest(first.run_at - timedelta(seconds=1)) is None
    engine.dispose()


class Hook(BaseHTTPRequestHandler):
    received: list[bytes] = []  # noqa: RUF012 (a test server's inbox)

    def do_POST(self) -> None:
        Hook.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_persistent_drift_recommends_retraining_once_and_calls_the_webhook(
    engine: Engine, tmp_path: Path
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    Thread(target=server.serve_forever, daemon=True).start()
    Hook.received = []
    hook = tmp_path / "hook-url"
    hook.write_text(f"http://127.0.0.1:{server.server_address[1]}/hook\n")
    settings = Settings(
        var_dir=tmp_path / "var",
        database_url=str(engine.url),
        drift_persistence=2,
        retraining_webhook_url_file=hook,
    )
    registry = LocalModelRegistry(settings.resolved_model_dir(), settings.model_name)
    registry.ensure_seeded()
    model = registry.production()
    try:
        with Session(engine, expire_on_commit=False) as session:
            store(session, darker(SAME))
            reports = [run_for_model(session, settings=settings, model=model) for _ in range(3)]
    finally:
        server.shutdown()
        server.server_close()
    assert [r.details["consecutive_drifted_runs"] for r in reports] == [1, 2, 3]
    assert [r.retraining_recommended for r in reports] == [False, True, True]
    assert len(Hook.received) == 1  # when the streak reaches the persistence, not after
    assert b'"retraining_recommended"' in Hook.received[0]
    engine.dispose()


def test_the_reference_and_the_current_window_are_feature_samples() -> None:
    assert len(REFERENCE) == 1050
    assert REFERENCE.embeddings.shape == (1050, 32)
    assert np.isfinite(REFERENCE.values["sharpness"]).all()
