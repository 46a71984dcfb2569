"""Usage analytics on both databases: hand-made users across days, with known answers."""

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from leafwatch.errors import InvalidPeriod
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.storage import db, usage
from leafwatch.storage.tables import Feedback, Prediction
from leafwatch.storage.usage import Period

MARCH = datetime(2026, 3, 1, tzinfo=UTC)
# The seeded traffic: (user, day of March, time, predicted class, location).
TRAFFIC = [
    ("old", -9, "12:00", "Healthy", None),  # 20 February: before the period, so never new in it
    ("old", 1, "10:00", "Stage1", "Kisumu"),
    ("a", 0, "08:00", "Healthy", "Kisumu"),
    ("a", 1, "09:00", "Stage1", None),
    ("a", 4, "09:30", "Stage2", "Bungoma"),
    ("b", 0, "23:30", "Stage3", None),
    ("b", 0, "23:45", "Stage3", None),
    ("b", 8, "08:15", "Stage4", "Bungoma"),  # 9 March: eight days after b's first, too late for D7
    ("c", 1, "14:00", "Healthy", "Kisumu"),
    ("c", 2, "01:00", "Healthy", None),
    ("d", 9, "08:40", "Stage1", None),
    ("e", 10, "09:00", "Healthy", None),  # 11 March: after the period
]
# 1-10 March, as `to=2026-03-10` means: up to the midnight that starts 11 March.
PERIOD = Period(MARCH, MARCH + timedelta(days=10))


def at(day: int, clock: str) -> datetime:
    hours, minutes = (int(part) for part in clock.split(":"))
    return MARCH + timedelta(days=day, hours=hours, minutes=minutes)


def prediction(user: str, when: datetime, name: str, location: str | None) -> Prediction:
    return Prediction(
        id=uuid.uuid4(),
        user_id=user,
        user_location=location,
        image_path="images/x.jpg",
        image_size_kb=12.0,
        image_width=320,
        image_height=240,
        image_hash="0" * 64,
        predicted_class_id=CLASS_NAMES.index(name),
        predicted_class_name=name,
        confidence=0.9,
        model_version="1",
        model_name="banana_sigatoka_detector",
        inference_time_ms=5.0,
        timestamp=when,
        meta={},
    )


def verdict(row: Prediction, when: datetime) -> Feedback:
    return Feedback(
        id=uuid.uuid4(),
        prediction_id=row.id,
        is_correct=True,
        feedback_source="web",
        timestamp=when,
    )


def seed_usage(session: Session) -> None:
    """Store TRAFFIC, and verdicts on a's first, c's first (twice) and d's (after the period)."""
    rows = [
        prediction(user, at(day, clock), name, place) for user, day, clock, name, place in TRAFFIC
    ]
    session.add_all(rows)
    session.flush()
    a_first, c_first, d_first = rows[2], rows[8], rows[10]
    session.add_all(
        [
            verdict(a_first, at(0, "09:00")),
            verdict(c_first, at(1, "15:00")),
            verdict(c_first, at(2, "15:00")),
            verdict(d_first, at(11, "10:00")),
        ]
    )
    session.commit()


def migrated_engine(url: str) -> Engine:
    """A migrated database; on PostgreSQL, sessions in UTC+14 show any day taken in local time."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    if engine.dialect.name != "postgresql":
        return engine
    engine.dispose()
    return create_engine(url, connect_args={"options": "-c TimeZone=Pacific/Kiritimati"})


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = migrated_engine(database_url)
    with db.make_sessionmaker(engine)() as opened:
        seed_usage(opened)
        yield opened
    engine.dispose()


def test_totals_users_locations_and_peak_hours(session: Session) -> None:
    report = usage.usage_report(session, period=PERIOD)
    assert report.total_predictions == 10
    assert report.users == 5
    assert report.located_predictions == 5
    assert report.judged_predictions == 2  # d's verdict came after the period
    assert report.feedback_rate == pytest.approx(0.2)
    assert report.active_users == {"1d": 1, "7d": 3, "30d": 5}
    hours = {hour: count for hour, count in enumerate(report.peak_hours) if count}
    assert hours == {1: 1, 8: 3, 9: 2, 10: 1, 14: 1, 23: 2}
    assert [(p.location, p.predictions, p.users) for p in report.locations] == [
        ("Kisumu", 3, 3),
        ("Bungoma", 2, 2),
    ]
    assert usage.usage_report(session, period=PERIOD, top_locations=1).locations[0].location == (
        "Kisumu"
    )


def test_daily_series_splits_active_users_into_new_and_returning(session: Session) -> None:
    daily = {entry.day: entry for entry in usage.usage_report(session, period=PERIOD).daily}
    assert list(daily) == [date(2026, 3, 1) + timedelta(days=n) for n in range(10)]
    expected = {  # day of March: (predictions, active, new, returning)
        1: (3, 2, 2, 0),
        2: (3, 3, 1, 2),
        3: (1, 1, 0, 1),
        4: (0, 0, 0, 0),
        5: (1, 1, 0, 1),
        9: (1, 1, 0, 1),
        10: (1, 1, 1, 0),
    }
    for day, entry in daily.items():
        figures = (entry.predictions, entry.active_users, entry.new_users, entry.returning_users)
        assert figures == expected.get(day.day, (0, 0, 0, 0)), day
    assert daily[date(2026, 3, 1)].classes == {"Healthy": 1, "Stage3": 2}
    assert daily[date(2026, 3, 2)].classes == {"Healthy": 1, "Stage1": 2}
    assert daily[date(2026, 3, 4)].classes == {}


def test_retention_by_daily_cohort(session: Session) -> None:
    report = usage.retention(session, period=PERIOD)
    cohorts = {cohort.day.day: cohort for cohort in report.cohorts}
    assert len(cohorts) == 10
    first, second = cohorts[1], cohorts[2]
    assert (first.size, first.d1, first.d7) == (2, 1, 1)  # a came back the next day, b too late
    assert (second.size, second.d1, second.d7) == (1, 1, 1)  # c, not `old`, is new on 2 March
    assert (cohorts[3].size, cohorts[3].d1, cohorts[3].d7) == (0, 0, 0)
    assert cohorts[4].d7 is None  # its seven days end after the period
    assert cohorts[9].d1 == 0
    assert cohorts[9].d7 is None
    assert (cohorts[10].size, cohorts[10].d1, cohorts[10].d7) == (1, None, None)
    assert first.d1_rate == pytest.approx(0.5)
    assert cohorts[10].d1_rate is None
    assert report.overall(1) == (2, 3, pytest.approx(2 / 3))
    assert report.overall(7) == (2, 3, pytest.approx(2 / 3))


def test_retention_only_counts_what_happened_by_the_end(session: Session) -> None:
    two_days = Period(MARCH, MARCH + timedelta(days=2))
    cohorts = usage.retention(session, period=two_days).cohorts
    assert [(c.size, c.d1, c.d7) for c in cohorts] == [(2, 1, None), (1, None, None)]
    # Ending at noon on 2 March: day 2 has not ended, so D1 of the first cohort is not known.
    noon = Period(MARCH, at(1, "12:00"))
    assert [(c.size, c.d1) for c in usage.retention(session, period=noon).cohorts] == [
        (2, None),
        (0, None),
    ]


def test_a_period_starting_mid_day_counts_whole_days_per_day(session: Session) -> None:
    period = Period(at(1, "12:00"), PERIOD.end)
    report = usage.usage_report(session, period=period)
    assert report.total_predictions == 5  # the exact period
    second = report.daily[0]
    assert second.day == date(2026, 3, 2)
    # The whole of 2 March: old and a return, c is new (a's earlier 1 March visit is seen).
    assert (second.active_users, second.new_users, second.returning_users) == (3, 1, 2)


def test_gauge_functions(session: Session) -> None:
    assert usage.active_users(session, as_of=at(2, "02:00")) == {"1d": 3, "7d": 4, "30d": 4}
    assert usage.active_users(session, as_of=MARCH - timedelta(days=40)) == {
        "1d": 0,
        "7d": 0,
        "30d": 0,
    }
    assert usage.feedback_rate(session, since=MARCH, until=at(12, "00:00")) == pytest.approx(3 / 11)
    assert usage.feedback_rate(session, since=MARCH, until=at(0, "08:30")) == 0.0
    assert usage.feedback_rate(session, since=MARCH - timedelta(days=5), until=MARCH) is None


def test_an_empty_database_gives_zeros(database_url: str) -> None:
    engine = migrated_engine(database_url)
    with db.make_sessionmaker(engine)() as session:
        report = usage.usage_report(session, period=PERIOD)
        assert report.total_predictions == 0
        assert report.feedback_rate is None
        assert report.peak_hours == [0] * 24
        assert report.locations == []
        assert all(entry.active_users == 0 for entry in report.daily)
        assert usage.retention(session, period=PERIOD).overall(1) == (0, 0, None)
    engine.dispose()


NOW = datetime(2026, 3, 20, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, Period(NOW - timedelta(days=30), NOW)),
        ("2026-03-01", "2026-03-10", PERIOD),
        (
            "2026-03-01T06:00:00Z",
            "2026-03-01T18:00:00+02:00",
            Period(at(0, "06:00"), at(0, "16:00")),
        ),
        ("2026-03-01T06:00:00", None, Period(at(0, "06:00"), NOW)),
        ("2026-03-10", "2030-01-01", Period(at(9, "00:00"), NOW)),  # the future is cut to now
    ],
)
def test_parse_period(start: str | None, end: str | None, expected: Period) -> None:
    assert usage.parse_period(start, end, now=NOW) == expected


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-03-10", "2026-03-01", "must be before"),
        ("2026-03-21", None, "must be before"),
        ("yesterday", None, "from='yesterday' is not an ISO 8601"),
        (None, "2026-13-01", "to='2026-13-01' is not an ISO 8601"),
        ("2025-01-01", "2026-03-01", "at most 366"),
    ],
)
def test_parse_period_refuses_bad_input(start: str | None, end: str | None, message: str) -> None:
    with pytest.raises(InvalidPeriod, match=message):
        usage.parse_period(start, end, now=NOW)


def test_period_days() -> None:
    assert Period(at(0, "23:00"), at(1, "00:00")).days() == [date(2026, 3, 1)]
    assert len(PERIOD.days()) == 10
