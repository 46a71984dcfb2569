"""Records go to the database, or to the spool while it is away, with a back-off (both databases).

The outage is real: a PostgreSQL URL on a port nobody listens on refuses every connection.
"""

import uuid
from datetime import timedelta

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from leafwatch.errors import InvalidFeedback, PredictionNotFound
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.monitor.features import FEATURES, PredictionFeatures
from leafwatch.observe.metrics import Metrics
from leafwatch.schemas import FeedbackIn
from leafwatch.service.feedback import submit_feedback
from leafwatch.service.recorder import (
    Recorder,
    prediction_body,
    prediction_from_body,
    row_values,
)
from leafwatch.storage.spool import Spool
from leafwatch.storage.tables import Feedback, Prediction, PredictionFeatureRow, utcnow

RETRY_S = 5.0


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def counted(recorder: Recorder, kind: str, outcome: str) -> float:
    value = recorder.metrics.registry.get_sample_value(
        "spool_records_total", {"kind": kind, "outcome": outcome}
    )
    return value or 0.0


def make_prediction(predicted: str = "Stage3", minutes_ago: float = 0) -> Prediction:
    """A prediction row as the predictor makes one."""
    class_id = CLASS_NAMES.index(predicted)
    return Prediction(
        id=uuid.uuid4(),
        user_id="farmer-1",
        user_location="Kisumu",
        image_path="ab/cd/abcd.jpg",
        image_size_kb=12.5,
        image_width=320,
        image_height=240,
        image_hash="ab" * 32,
        predicted_class_id=class_id,
        predicted_class_name=predicted,
        confidence=0.8125,
        model_version="1",
        model_name="banana_sigatoka_detector",
        inference_time_ms=3.25,
        timestamp=utcnow() - timedelta(minutes=minutes_ago),
        meta={"image_format": "JPEG", "probabilities": [0.1, 0.0, 0.0, 0.8125, 0.0, 0.0, 0.0875]},
    )


def make_features(row: Prediction) -> PredictionFeatures:
    return PredictionFeatures(
        values={name: index / 3 for index, name in enumerate(FEATURES)},
        image_format="JPEG",
        predicted_class=row.predicted_class_id,
        embedding=(np.arange(16, dtype=np.float32) / 7).astype(np.float32),
    )


def verdict(prediction_id: uuid.UUID, *, right: bool, actual: str | None = None) -> FeedbackIn:
    return FeedbackIn(
        prediction_id=prediction_id,
        is_correct=right,
        correct_class_name=actual,  # type: ignore[arg-type]
        feedback_source="mobile_app",
    )


def test_records_go_to_the_database_while_it_answers(
    live: sessionmaker[Session], spool: Spool
) -> None:
    recorder = Recorder(live, spool, metrics(), retry_s=RETRY_S)
    row = make_prediction()
    assert recorder.save_prediction(row, make_features(row)) is False
    feedback, spooled = submit_feedback(recorder, body=verdict(row.id, right=True))
    assert not spooled
    assert feedback.correct_class_name == "Stage3"
    with live() as session:
        assert session.get(Prediction, row.id) is not None
        assert session.get(PredictionFeatureRow, row.id) is not None
        assert session.get(Feedback, feedback.id) is not None
    assert spool.depth() == 0
    assert counted(recorder, "prediction", "spooled") == 0


def test_while_the_database_is_away_records_are_spooled_without_waiting_on_it_again(
    dead: sessionmaker[Session], dead_engine: Engine, spool: Spool
) -> None:
    attempts = []
    event.listen(dead_engine, "do_connect", lambda *args: attempts.append(1))
    clock = Clock()
    recorder = Recorder(dead, spool, metrics(), retry_s=RETRY_S, clock=clock)
    first, second, third = make_prediction(), make_prediction(), make_prediction()
    assert recorder.save_prediction(first, make_features(first)) is True
    tried = len(attempts)
    assert tried >= 1
    assert recorder.database_away()
    clock.now += RETRY_S - 0.1
    assert recorder.save_prediction(second, make_features(second)) is True
    assert len(attempts) == tried, "within the back-off the database is not tried"
    clock.now += 0.2
    assert recorder.save_prediction(third, make_features(third)) is True
    assert len(attempts) > tried, "after the back-off it is tried again"
    assert [record.key for record in spool.own.pending(10)] == [
        str(first.id),
        str(second.id),
        str(third.id),
    ]
    assert counted(recorder, "prediction", "spooled") == 3


def test_without_a_spool_an_outage_is_an_error(dead: sessionmaker[Session]) -> None:
    recorder = Recorder(dead, None, metrics(), retry_s=RETRY_S)
    row = make_prediction()
    with pytest.raises(OperationalError):
        recorder.save_prediction(row, make_features(row))
    assert not recorder.database_away()


def test_a_row_the_database_refuses_is_an_error_not_an_outage(
    live: sessionmaker[Session], spool: Spool
) -> None:
    recorder = Recorder(live, spool, metrics(), retry_s=RETRY_S)
    row = make_prediction()
    recorder.save_prediction(row, make_features(row))
    again = make_prediction()
    again.id = row.id
    with pytest.raises(IntegrityError):
        recorder.save_prediction(again, make_features(again))
    assert spool.depth() == 0
    assert not recorder.database_away()


def test_a_spooled_prediction_comes_back_exactly_as_it_was(spool: Spool) -> None:
    row = make_prediction()
    features = make_features(row)
    spool.append("prediction", str(row.id), prediction_body(row, features))
    body = spool.find("prediction", str(row.id))
    assert body is not None
    again, again_features = prediction_from_body(body)
    assert row_values(again) == row_values(row)
    assert again.timestamp == row.timestamp
    assert again.id == row.id
    assert again_features.values == features.values
    assert again_features.embedding.dtype == np.float32
    assert np.array_equal(again_features.embedding, features.embedding)


def test_during_an_outage_a_verdict_is_checked_against_its_spooled_prediction(
    dead: sessionmaker[Session], spool: Spool
) -> None:
    recorder = Recorder(dead, spool, metrics(), retry_s=RETRY_S)
    row = make_prediction("Stage3")
    recorder.save_prediction(row, make_features(row))
    with pytest.raises(InvalidFeedback, match="Stage3"):
        submit_feedback(recorder, body=verdict(row.id, right=False, actual="Stage3"))
    right, spooled = submit_feedback(recorder, body=verdict(row.id, right=True))
    assert spooled
    assert right.correct_class_name == "Stage3"
    assert right.correct_class_id == 3
    # A prediction the spool does not hold may be in the database: kept, checked at replay.
    unknown, spooled = submit_feedback(recorder, body=verdict(uuid.uuid4(), right=True))
    assert spooled
    assert unknown.correct_class_name is None
    assert [record.kind for record in spool.own.pending(10)] == [
        "prediction",
        "feedback",
        "feedback",
    ]


def test_with_the_database_back_a_verdict_on_a_spooled_prediction_follows_it_into_the_spool(
    live: sessionmaker[Session], dead: sessionmaker[Session], spool: Spool
) -> None:
    row = make_prediction("Healthy")
    Recorder(dead, spool, metrics(), retry_s=RETRY_S).save_prediction(row, make_features(row))
    recorder = Recorder(live, spool, metrics(), retry_s=RETRY_S)
    feedback, spooled = submit_feedback(
        recorder, body=verdict(row.id, right=False, actual="Stage2")
    )
    assert spooled
    assert feedback.correct_class_name == "Stage2"
    assert spool.find("feedback", str(feedback.id)) is not None
    with live() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 0
    with pytest.raises(PredictionNotFound):
        submit_feedback(recorder, body=verdict(uuid.uuid4(), right=True))
