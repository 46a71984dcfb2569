"""Realized-quality counts in SQL, on SQLite and PostgreSQL, from hand-made predictions."""

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from leafwatch.model.labels import class_id
from leafwatch.storage import db
from leafwatch.storage import quality as store
from leafwatch.storage.tables import Feedback, ModelPerformance, Prediction

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with db.make_sessionmaker(engine)() as session:
        yield session
    engine.dispose()


def make_prediction(
    session: Session,
    *,
    predicted: str = "Stage2",
    confidence: float = 0.9,
    at: datetime = NOW - timedelta(minutes=10),
    version: str = "1",
) -> Prediction:
    row = Prediction(
        id=uuid.uuid4(),
        user_id="farmer-1",
        user_location=None,
        image_path="x.jpg",
        image_size_kb=10.0,
        image_width=320,
        image_height=240,
        image_hash="0" * 64,
        predicted_class_id=class_id(predicted),
        predicted_class_name=predicted,
        confidence=confidence,
        model_version=version,
        model_name="banana_sigatoka_detector",
        inference_time_ms=3.0,
        timestamp=at,
        meta={},
    )
    session.add(row)
    session.commit()
    return row


def make_verdict(
    session: Session,
    prediction: Prediction,
    *,
    right: bool,
    truth: str | None = None,
    source: str = "mobile_app",
    at: datetime | None = None,
) -> None:
    name = prediction.predicted_class_name if right else truth
    session.add(
        Feedback(
            id=uuid.uuid4(),
            prediction_id=prediction.id,
            is_correct=right,
            correct_class_id=class_id(name) if name is not None else None,
            correct_class_name=name,
            feedback_source=source,
            timestamp=at or prediction.timestamp + timedelta(minutes=1),
        )
    )
    session.commit()


WINDOWS = {"1h": (NOW - timedelta(hours=1), NOW), "24h": (NOW - timedelta(hours=24), NOW)}

Key = tuple[str, str, int, bool | None, int | None]


def cells_by_key(cells: list[store.QualityCell]) -> dict[Key, tuple[int, float]]:
    """(version, window, predicted, verdict, true class) -> (count, confidence sum)."""
    keyed: dict[Key, tuple[int, float]] = {}
    for cell in cells:
        key = (
            cell.model_version,
            cell.window,
            cell.predicted_class_id,
            cell.is_correct,
            cell.true_class_id,
        )
        assert key not in keyed, key
        keyed[key] = (cell.count, round(cell.confidence_sum, 9))
    return keyed


def test_cells_count_predictions_by_verdict_and_sum_confidence_per_window(
    session: Session,
) -> None:
    right = make_prediction(session, confidence=0.9)
    wrong = make_prediction(session, confidence=0.6)
    make_prediction(session, confidence=0.5)  # never judged
    make_prediction(session, confidence=0.25)  # never judged
    old = make_prediction(session, predicted="Healthy", confidence=0.8, at=NOW - timedelta(hours=3))
    make_verdict(session, right, right=True)
    make_verdict(session, wrong, right=False, truth="Stage4")
    make_verdict(session, old, right=True)
    assert cells_by_key(store.quality_cells(session, ranges=WINDOWS)) == {
        ("1", "1h", 2, True, 2): (1, 0.9),
        ("1", "1h", 2, False, 4): (1, 0.6),
        ("1", "1h", 2, None, None): (2, 0.75),
        ("1", "24h", 2, True, 2): (1, 0.9),
        ("1", "24h", 2, False, 4): (1, 0.6),
        ("1", "24h", 2, None, None): (2, 0.75),
        ("1", "24h", 0, True, 0): (1, 0.8),
    }


def test_ranges_include_their_start_and_exclude_their_end(session: Session) -> None:
    make_prediction(session, at=NOW - timedelta(hours=1))
    make_prediction(session, at=NOW)
    make_prediction(session, at=NOW - timedelta(hours=2))
    cells = store.quality_cells(session, ranges={"1h": WINDOWS["1h"]})
    assert [(cell.window, cell.count) for cell in cells] == [("1h", 1)]


def test_ranges_may_be_disjoint_or_overlap_in_any_order(session: Session) -> None:
    for hours in (0.5, 2, 5, 30):
        make_prediction(session, at=NOW - timedelta(hours=hours))
    ranges = {
        "late": (NOW - timedelta(hours=3), NOW),
        "early": (NOW - timedelta(hours=48), NOW - timedelta(hours=4)),
        "middle": (NOW - timedelta(hours=6), NOW - timedelta(hours=1)),
        "all": (NOW - timedelta(days=3), NOW + timedelta(hours=1)),
    }
    counts = {cell.window: cell.count for cell in store.quality_cells(session, ranges=ranges)}
    assert counts == {"late": 2, "early": 2, "middle": 2, "all": 4}


def test_the_expert_verdict_decides(session: Session) -> None:
    leaf = make_prediction(session, predicted="Stage3")
    make_verdict(session, leaf, right=True, at=NOW - timedelta(minutes=9))
    make_verdict(
        session,
        leaf,
        right=False,
        truth="Stage5",
        source="expert_review",
        at=NOW - timedelta(minutes=8),
    )
    make_verdict(session, leaf, right=True, source="web", at=NOW - timedelta(minutes=7))
    assert cells_by_key(store.quality_cells(session, ranges=WINDOWS)) == {
        ("1", "1h", 3, False, 5): (1, 0.9),
        ("1", "24h", 3, False, 5): (1, 0.9),
    }


def test_among_equal_sources_the_latest_verdict_counts(session: Session) -> None:
    leaf = make_prediction(session, predicted="Stage3")
    make_verdict(session, leaf, right=False, truth="Stage1", at=NOW - timedelta(minutes=9))
    make_verdict(session, leaf, right=True, source="web", at=NOW - timedelta(minutes=8))
    cells = store.quality_cells(session, ranges={"1h": WINDOWS["1h"]})
    assert [(cell.is_correct, cell.true_class_id) for cell in cells] == [(True, 3)]


def test_a_wrong_verdict_without_a_class_has_no_true_class(session: Session) -> None:
    make_verdict(session, make_prediction(session, predicted="Stage6"), right=False)
    cells = store.quality_cells(session, ranges={"1h": WINDOWS["1h"]})
    assert [(cell.is_correct, cell.true_class_id) for cell in cells] == [(False, None)]


def test_cells_can_be_limited_to_one_model_version(session: Session) -> None:
    make_verdict(session, make_prediction(session, version="1"), right=True)
    make_verdict(session, make_prediction(session, version="2"), right=False, truth="Stage6")
    everything = store.quality_cells(session, ranges=WINDOWS)
    assert {cell.model_version for cell in everything} == {"1", "2"}
    only = store.quality_cells(session, ranges=WINDOWS, model_version="2")
    assert {(cell.model_version, cell.is_correct) for cell in only} == {("2", False)}


def test_verdicts_given_after_given_by_do_not_count(session: Session) -> None:
    leaf = make_prediction(session)
    make_verdict(session, leaf, right=True, at=NOW + timedelta(minutes=5))
    cells = store.quality_cells(session, ranges=WINDOWS, given_by=NOW)
    assert {cell.is_correct for cell in cells} == {None}


def performance_row(version: str, day: date, correct: int) -> dict[str, object]:
    return {
        "model_version": version,
        "day": day,
        "predictions": 10,
        "reviewed": 5,
        "correct": correct,
        "accuracy": correct / 5,
        "wilson_low": None,
        "wilson_high": None,
        "mean_confidence": 0.8,
        "mean_confidence_correct": None,
        "mean_confidence_incorrect": None,
        "per_class": {"Healthy": {"predictions": 10}},
        "confusion": {"classes": ["Healthy"], "matrix": [[5]]},
        "computed_at": NOW,
    }


def test_upsert_daily_replaces_the_days_rows_and_leaves_other_days(session: Session) -> None:
    day, other = date(2026, 6, 14), date(2026, 6, 13)
    store.upsert_daily(session, day=other, rows=[performance_row("1", other, 1)])
    store.upsert_daily(
        session, day=day, rows=[performance_row("1", day, 2), performance_row("2", day, 3)]
    )
    session.commit()
    store.upsert_daily(session, day=day, rows=[performance_row("1", day, 4)])
    session.commit()
    session.expire_all()
    rows = session.scalars(select(ModelPerformance).order_by(ModelPerformance.day)).all()
    assert [(row.day, row.model_version, row.correct) for row in rows] == [
        (other, "1", 1),
        (day, "1", 4),
    ]
    assert rows[1].per_class == {"Healthy": {"predictions": 10}}
    assert rows[1].computed_at == NOW
    listed = store.daily_rows(session, first_day=day, last_day=day)
    assert [(row.model_version, row.accuracy) for row in listed] == [("1", 0.8)]
    assert store.daily_rows(session, first_day=other, last_day=day, model_version="2") == []
