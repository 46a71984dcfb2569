"""Realized quality: the Wilson interval, shaping the counts, the daily rows (both databases)."""

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from leafwatch.errors import InvalidPeriod
from leafwatch.service import quality
from leafwatch.storage import db
from leafwatch.storage.quality import QualityCell
from leafwatch.storage.tables import ModelPerformance
from tests.storage.test_quality import NOW, make_prediction, make_verdict


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with db.make_sessionmaker(engine)() as session:
        yield session
    engine.dispose()


def wilson_by_the_formula(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    # Wilson (1927), as written by Agresti & Coull (1998), eq. 2.
    p = k / n
    centre = p + z**2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return (centre - half) / (1 + z**2 / n), (centre + half) / (1 + z**2 / n)


def test_wilson_interval_of_8_right_out_of_10() -> None:
    low, high = quality.wilson_interval(8, 10) or (0.0, 0.0)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert (low, high) == pytest.approx(wilson_by_the_formula(8, 10), abs=1e-12)


@pytest.mark.parametrize(("k", "n"), [(1, 1), (0, 5), (5, 5), (37, 50), (990, 1000), (3, 7)])
def test_wilson_interval_matches_the_formula_and_holds_the_point(k: int, n: int) -> None:
    low, high = quality.wilson_interval(k, n) or (-1.0, -1.0)
    expected = wilson_by_the_formula(k, n)
    assert low == pytest.approx(max(0.0, expected[0]), abs=1e-12)
    assert high == pytest.approx(min(1.0, expected[1]), abs=1e-12)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_interval_narrows_with_more_verdicts() -> None:
    few = quality.wilson_interval(8, 10) or (0.0, 1.0)
    many = quality.wilson_interval(800, 1000) or (0.0, 1.0)
    assert many[1] - many[0] < (few[1] - few[0]) / 5


def test_wilson_interval_of_nothing_is_none_and_nonsense_is_refused() -> None:
    assert quality.wilson_interval(0, 0) is None
    for k, n in ((3, 2), (-1, 2), (0, -1)):
        with pytest.raises(ValueError, match="correct"):
            quality.wilson_interval(k, n)


def test_summarize_derives_precision_recall_and_the_matrix_from_counts() -> None:
    ranges = {"1h": (NOW - timedelta(hours=1), NOW), "24h": (NOW - timedelta(hours=24), NOW)}
    cells = [
        QualityCell("1", "1h", 1, True, 1, 3, 2.7),  # Stage1: 3 right,
        QualityCell("1", "1h", 1, False, 0, 2, 1.2),  # 2 truly Healthy
        QualityCell("1", "1h", 0, False, 1, 1, 0.4),  # Healthy: 1 wrong, truly Stage1
        QualityCell("1", "1h", 0, None, None, 1, 0.6),  # Healthy: 1 without a verdict
        QualityCell("1", "1h", 6, False, None, 1, 0.5),  # Stage6: wrong, no true class given
    ]
    hour, day = quality.summarize(ranges, cells)
    assert (hour.window, day.window) == ("1h", "24h")
    assert (hour.predictions, hour.reviewed, hour.correct) == (8, 7, 3)
    assert hour.accuracy == 3 / 7
    assert hour.mean_confidence == pytest.approx(5.4 / 8)
    assert hour.mean_confidence_correct == pytest.approx(0.9)
    assert hour.mean_confidence_incorrect == pytest.approx(2.1 / 4)
    stage1, healthy = hour.per_class["Stage1"], hour.per_class["Healthy"]
    assert (stage1.precision, stage1.recall) == (0.6, 0.75)
    assert (healthy.precision, healthy.recall) == (0.0, 0.0)
    assert hour.per_class["Stage6"].precision == 0.0
    assert hour.per_class["Stage6"].recall is None
    assert hour.confusion[1] == [1, 3, 0, 0, 0, 0, 0]
    assert hour.confusion[0] == [0, 2, 0, 0, 0, 0, 0]
    assert sum(map(sum, hour.confusion)) == 6  # the wrong verdict without a class is not in it
    assert (healthy.predictions, healthy.reviewed, healthy.actual) == (2, 1, 2)
    # A window the version has no prediction in is there, empty, with no figures.
    assert (day.predictions, day.reviewed, day.accuracy, day.interval) == (0, 0, None, None)
    assert day.mean_confidence is None
    assert day.mean_confidence_incorrect is None


def test_request_ranges_are_the_rolling_windows_or_the_one_range() -> None:
    windows = quality.request_ranges(start=None, end=None, now=NOW)
    assert list(windows) == ["1h", "24h", "7d", "30d"]
    assert windows["30d"] == (NOW - timedelta(days=30), NOW)
    naive_end = datetime(2026, 6, 1, 0, 0)
    ending = quality.request_ranges(start=None, end=naive_end, now=NOW)
    assert ending["1h"][1] == naive_end.replace(tzinfo=UTC)
    start = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    assert quality.request_ranges(start=start, end=None, now=NOW) == {"range": (start, NOW)}


def test_a_range_that_does_not_move_forward_is_refused() -> None:
    for start in (NOW, NOW + timedelta(seconds=1)):
        with pytest.raises(InvalidPeriod, match="must be before"):
            quality.request_ranges(start=start, end=NOW, now=NOW)


def test_eight_right_out_of_ten_on_the_database(session: Session) -> None:
    for index in range(10):
        leaf = make_prediction(session, predicted="Stage2", confidence=0.5 + index / 20)
        make_verdict(session, leaf, right=index >= 2, truth="Stage3")
    make_prediction(session, predicted="Healthy", at=NOW - timedelta(days=3))  # no verdict
    ranges = quality.rolling_ranges(NOW, quality.QUALITY_WINDOWS)
    figures = {entry.window: entry for entry in quality.window_quality(session, ranges=ranges)}
    hour = figures["1h"]
    assert (hour.predictions, hour.reviewed, hour.correct, hour.accuracy) == (10, 10, 8, 0.8)
    assert hour.interval == pytest.approx(wilson_by_the_formula(8, 10))
    assert hour.mean_confidence_incorrect == pytest.approx((0.5 + 0.55) / 2)
    assert hour.mean_confidence_correct == pytest.approx(
        sum(0.5 + i / 20 for i in range(2, 10)) / 8
    )
    assert hour.per_class["Stage2"].precision == 0.8
    assert hour.per_class["Stage3"].actual == 2
    assert hour.per_class["Stage3"].recall == 0.0
    assert hour.per_class["Stage2"].recall == 1.0
    assert hour.confusion[3][2] == 2
    assert hour.confusion[2][2] == 8
    week = figures["7d"]
    assert (week.predictions, week.reviewed, week.per_class["Healthy"].predictions) == (11, 10, 1)


def test_a_version_with_predictions_but_no_verdicts_has_no_accuracy(session: Session) -> None:
    make_prediction(session, version="2")
    ranges = quality.rolling_ranges(NOW, quality.QUALITY_WINDOWS)
    figures = quality.window_quality(session, ranges=ranges)
    assert [entry.window for entry in figures] == ["1h", "24h", "7d", "30d"]
    assert all(entry.predictions == 1 for entry in figures)
    assert all(entry.accuracy is None and entry.interval is None for entry in figures)
    assert quality.window_quality(session, ranges=ranges, model_version="1") == []


def test_accuracy_intervals_give_the_bounds_per_version_and_window(session: Session) -> None:
    for index in range(10):
        make_verdict(session, make_prediction(session), right=index < 8, truth="Stage1")
    old = make_prediction(session, version="2", at=NOW - timedelta(hours=5))
    make_verdict(session, old, right=False, truth="Stage1")
    windows = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}
    figures = {
        (entry.model_version, entry.window): entry
        for entry in quality.accuracy_intervals(session, as_of=NOW, windows=windows)
    }
    assert set(figures) == {("1", "1h"), ("1", "24h"), ("2", "1h"), ("2", "24h")}
    first = figures["1", "1h"]
    assert (first.reviewed, first.correct, first.accuracy) == (10, 8, 0.8)
    assert (first.wilson_low, first.wilson_high) == pytest.approx(wilson_by_the_formula(8, 10))
    empty = figures["2", "1h"]
    assert (empty.reviewed, empty.accuracy, empty.wilson_low, empty.wilson_high) == (
        0,
        None,
        None,
        None,
    )
    assert figures["2", "24h"].wilson_high == pytest.approx(wilson_by_the_formula(0, 1)[1])


def test_daily_rows_are_written_once_per_version_and_day_and_refreshed(session: Session) -> None:
    day = date(2026, 6, 14)
    midnight = datetime(2026, 6, 14, tzinfo=UTC)
    first = make_prediction(session, version="1", at=midnight, confidence=0.9)
    last = make_prediction(session, version="1", at=midnight + timedelta(days=1, microseconds=-1))
    make_prediction(session, version="1", at=midnight + timedelta(days=1))  # the next day
    make_prediction(session, version="2", at=midnight + timedelta(hours=12), predicted="Stage6")
    make_verdict(session, first, right=True)
    assert quality.record_daily_performance(session, day=day) == 2
    make_verdict(session, last, right=False, truth="Stage5")  # a verdict that arrives later
    assert quality.record_daily_performance(session, day=day) == 2
    session.expire_all()
    rows = session.scalars(select(ModelPerformance).order_by(ModelPerformance.model_version)).all()
    assert [(row.model_version, row.day, row.predictions) for row in rows] == [
        ("1", day, 2),
        ("2", day, 1),
    ]
    one = rows[0]
    assert (one.reviewed, one.correct, one.accuracy) == (2, 1, 0.5)
    assert (one.wilson_low, one.wilson_high) == pytest.approx(wilson_by_the_formula(1, 2))
    assert one.mean_confidence_correct == pytest.approx(0.9)
    assert one.per_class["Stage2"] == {
        "predictions": 2,
        "reviewed": 2,
        "correct": 1,
        "actual": 1,
        "precision": 0.5,
        "recall": 1.0,
    }
    assert one.per_class["Stage5"]["recall"] == 0.0
    assert one.confusion["classes"][5] == "Stage5"
    assert one.confusion["matrix"][5][2] == 1
    two = rows[1]
    assert (two.reviewed, two.accuracy, two.wilson_low, two.mean_confidence) == (0, None, None, 0.9)


def test_a_day_without_predictions_writes_nothing(session: Session) -> None:
    make_prediction(session, at=datetime(2026, 6, 14, 12, tzinfo=UTC))
    assert quality.record_daily_performance(session, day=date(2026, 6, 13)) == 0
    assert session.scalars(select(ModelPerformance)).all() == []
