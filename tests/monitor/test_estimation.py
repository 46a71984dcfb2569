"""Accuracy estimated from confidence, per version and window, on both databases; its gap."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from leafwatch.model.labels import CLASS_NAMES
from leafwatch.monitor.estimation import EstimatedAccuracy, estimated_accuracy, estimation_gaps
from leafwatch.monitor.statistics import wilson_interval
from leafwatch.storage import db
from leafwatch.storage.queries import VersionAccuracy, accuracy_by_version
from leafwatch.storage.tables import Feedback, Prediction

AS_OF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WINDOWS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def predict(
    session: Session, *, confidence: float, age: timedelta, version: str = "1"
) -> uuid.UUID:
    """Store a prediction made `age` before AS_OF with this confidence."""
    prediction_id = uuid.uuid4()
    session.add(
        Prediction(
            id=prediction_id,
            user_id="farmer-1",
            image_path="x",
            image_size_kb=1.0,
            image_width=1,
            image_height=1,
            image_hash="0" * 64,
            predicted_class_id=1,
            predicted_class_name=CLASS_NAMES[1],
            confidence=confidence,
            model_version=version,
            model_name="m",
            inference_time_ms=1.0,
            timestamp=AS_OF - age,
        )
    )
    session.flush()
    return prediction_id


def judge(
    session: Session,
    prediction_id: uuid.UUID,
    *,
    correct: bool,
    after: timedelta = timedelta(minutes=1),
    source: str = "mobile_app",
) -> None:
    """Store a verdict given `after` the prediction was made."""
    made = session.get_one(Prediction, prediction_id).timestamp
    session.add(
        Feedback(
            id=uuid.uuid4(),
            prediction_id=prediction_id,
            is_correct=correct,
            feedback_source=source,
            timestamp=made + after,
        )
    )
    session.flush()


def by_key(figures: list[EstimatedAccuracy]) -> dict[tuple[str, str], EstimatedAccuracy]:
    return {(figure.model_version, figure.window): figure for figure in figures}


def test_each_window_averages_the_confidence_of_its_own_predictions(engine: Engine) -> None:
    with Session(engine) as session:
        for confidence, age in [
            (0.9, timedelta(minutes=10)),
            (0.7, timedelta(minutes=50)),
            (0.5, timedelta(hours=5)),
            (0.4, timedelta(days=3)),
            (0.2, timedelta(days=20)),
            (0.99, timedelta(days=40)),  # before every window
            (0.01, -timedelta(minutes=5)),  # after as_of
        ]:
            predict(session, confidence=confidence, age=age)
        predict(session, confidence=0.6, age=timedelta(days=10), version="2")
        session.commit()
        figures = estimated_accuracy(session, as_of=AS_OF, windows=WINDOWS)

    assert [(f.model_version, f.window) for f in figures] == [
        (version, window) for version in ("1", "2") for window in WINDOWS
    ]
    found = by_key(figures)
    expected = {"1h": (2, 0.8), "24h": (3, 0.7), "7d": (4, 0.625), "30d": (5, 0.54)}
    for window, (count, mean) in expected.items():
        assert found["1", window].predictions == count
        assert found["1", window].estimated == pytest.approx(mean)
    for window in ("1h", "24h", "7d"):
        assert found["2", window].predictions == 0
        assert found["2", window].estimated is None
    assert found["2", "30d"].predictions == 1
    assert found["2", "30d"].estimated == pytest.approx(0.6)


def test_a_window_starts_inclusive_and_ends_before_as_of(engine: Engine) -> None:
    with Session(engine) as session:
        predict(session, confidence=0.3, age=timedelta(hours=1))  # exactly the 1h boundary
        predict(session, confidence=0.8, age=timedelta())  # exactly as_of: next window's
        session.commit()
        figures = by_key(estimated_accuracy(session, as_of=AS_OF, windows=WINDOWS))
    assert figures["1", "1h"].predictions == 1
    assert figures["1", "1h"].estimated == pytest.approx(0.3)


def test_reviewed_figures_count_one_verdict_per_prediction_given_by_as_of(engine: Engine) -> None:
    with Session(engine) as session:
        twice = predict(session, confidence=0.9, age=timedelta(minutes=30))
        judge(session, twice, correct=True)
        judge(session, twice, correct=False, after=timedelta(minutes=2), source="expert_review")
        late = predict(session, confidence=0.6, age=timedelta(minutes=20))
        judge(session, late, correct=True, after=timedelta(hours=2))  # given after as_of
        judged_earlier = predict(session, confidence=0.5, age=timedelta(days=2))
        judge(session, judged_earlier, correct=True)
        predict(session, confidence=0.1, age=timedelta(days=3))
        session.commit()
        figures = by_key(estimated_accuracy(session, as_of=AS_OF, windows=WINDOWS))

    assert figures["1", "1h"].predictions == 2
    assert figures["1", "1h"].reviewed == 1
    assert figures["1", "1h"].reviewed_estimated == pytest.approx(0.9)
    assert figures["1", "7d"].predictions == 4
    assert figures["1", "7d"].estimated == pytest.approx(0.525)
    assert figures["1", "7d"].reviewed == 2
    assert figures["1", "7d"].reviewed_estimated == pytest.approx(0.7)


def test_no_predictions_in_the_longest_window_give_no_figures(engine: Engine) -> None:
    with Session(engine) as session:
        assert estimated_accuracy(session, as_of=AS_OF, windows=WINDOWS) == []
        predict(session, confidence=0.9, age=timedelta(days=31))
        session.commit()
        assert estimated_accuracy(session, as_of=AS_OF, windows=WINDOWS) == []
        assert estimated_accuracy(session, as_of=AS_OF, windows={}) == []


def test_every_window_and_version_come_from_one_query(engine: Engine) -> None:
    with Session(engine) as session:
        for version in ("1", "2", "3"):
            predict(session, confidence=0.9, age=timedelta(hours=2), version=version)
        session.commit()
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(args[2])

        event.listen(engine, "before_cursor_execute", count)
        try:
            figures = estimated_accuracy(session, as_of=AS_OF, windows=WINDOWS)
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert len(figures) == 12
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_the_gap_compares_the_same_reviewed_predictions_on_both_databases(engine: Engine) -> None:
    with Session(engine) as session:
        # Version 1: 60 reviewed predictions at 0.9 confidence, 45 right; 40 unreviewed at 0.5.
        for index in range(60):
            made = predict(session, confidence=0.9, age=timedelta(hours=3))
            judge(session, made, correct=index < 45)
        for _ in range(40):
            predict(session, confidence=0.5, age=timedelta(hours=3))
        # Version 2: 49 verdicts, one short of the minimum.
        for _ in range(49):
            judge(
                session,
                predict(session, confidence=0.8, age=timedelta(hours=3), version="2"),
                correct=True,
            )
        session.commit()
        estimates = estimated_accuracy(session, as_of=AS_OF, windows=WINDOWS)
        realized = accuracy_by_version(session, as_of=AS_OF, windows=WINDOWS)

    gaps = estimation_gaps(estimates, realized, min_verdicts=50)
    assert [(g.model_version, g.window) for g in gaps] == [("1", "24h"), ("1", "7d"), ("1", "30d")]
    for gap in gaps:
        assert gap.reviewed == 60
        assert gap.estimated == pytest.approx(0.9)  # not 0.74, the mean over every prediction
        assert gap.realized == pytest.approx(0.75)
        assert gap.gap == pytest.approx(0.15)
        assert gap.outside_interval
    assert by_key(estimates)["1", "24h"].estimated == pytest.approx(0.74)


def estimate(version: str, window: str, reviewed: int, mean: float | None) -> EstimatedAccuracy:
    return EstimatedAccuracy(version, window, reviewed + 10, 0.5, reviewed, mean)


def test_the_gap_needs_the_minimum_verdicts_and_both_figures() -> None:
    estimates = [
        estimate("1", "1h", 50, 0.95),
        estimate("1", "24h", 49, 0.95),
        estimate("2", "1h", 0, None),
        estimate("3", "1h", 80, 0.9),  # no realized figure for version 3
    ]
    realized = [
        VersionAccuracy("1", "1h", 50, 40),
        VersionAccuracy("1", "24h", 49, 40),
        VersionAccuracy("2", "1h", 60, 50),  # inconsistent as_of: no reviewed estimate, no gap
        VersionAccuracy("1", "1h", 50, 50, predicted_class="Stage1"),  # per class: ignored
    ]
    gaps = estimation_gaps(estimates, realized, min_verdicts=50)
    assert len(gaps) == 1
    assert (gaps[0].model_version, gaps[0].window, gaps[0].reviewed) == ("1", "1h", 50)
    assert gaps[0].gap == pytest.approx(0.95 - 0.8)
    assert len(estimation_gaps(estimates, realized, min_verdicts=10)) == 2
    assert estimation_gaps([], realized) == []


def test_a_calibrated_estimate_inside_the_interval_is_not_flagged() -> None:
    gaps = estimation_gaps([estimate("1", "7d", 200, 0.9)], [VersionAccuracy("1", "7d", 200, 176)])
    assert gaps[0].gap == pytest.approx(0.02)
    assert not gaps[0].outside_interval


@pytest.mark.parametrize(
    ("correct", "total", "low", "high"),
    [
        # Reference values: Wilson (1927) score interval, z = 1.959964, computed by hand:
        # p = 0.9, n = 50 gives centre 0.8717 and half-width 0.0851.
        (45, 50, 0.7864, 0.9565),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_the_wilson_interval_matches_reference_values(
    correct: int, total: int, low: float, high: float
) -> None:
    assert wilson_interval(correct, total) == pytest.approx((low, high), abs=1e-4)


def test_the_wilson_interval_of_nothing_is_none() -> None:
    assert wilson_interval(0, 0) is None
