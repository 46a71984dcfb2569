"""Daily rollups on both databases: the figures they give are the live ones, late rows included."""

import random
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from leafwatch.model.labels import CLASS_NAMES
from leafwatch.service.quality import WindowQuality, request_ranges, window_quality
from leafwatch.storage import db, rollups, usage
from leafwatch.storage.tables import Feedback, Prediction, RollupDay, UsageUser
from leafwatch.storage.usage import Period
from tests.storage.test_usage import migrated_engine

NOW = datetime(2026, 5, 20, 15, 30, tzinfo=UTC)
TODAY = NOW.date()
DAYS = 40
LOCATIONS = ("Kisumu", "Bungoma", "Meru", None)
SOURCES = ("mobile_app", "web", "expert_review")


def midnight(days_ago: int) -> datetime:
    return datetime.combine(TODAY - timedelta(days=days_ago), datetime.min.time(), UTC)


def prediction(user: str, when: datetime, rng: random.Random) -> Prediction:
    class_id = rng.randrange(len(CLASS_NAMES))
    return Prediction(
        id=uuid.uuid4(),
        user_id=user,
        user_location=rng.choice(LOCATIONS),
        image_path="images/x.jpg",
        image_size_kb=12.0,
        image_width=320,
        image_height=240,
        image_hash="0" * 64,
        predicted_class_id=class_id,
        predicted_class_name=CLASS_NAMES[class_id],
        confidence=round(rng.uniform(0.3, 1.0), 3),
        model_version=rng.choice(("1", "1", "2")),
        model_name="banana_sigatoka_detector",
        inference_time_ms=5.0,
        timestamp=when,
        meta={},
    )


def verdict(row: Prediction, when: datetime, rng: random.Random) -> Feedback:
    right = rng.random() < 0.7
    truth = None if right or rng.random() < 0.2 else rng.randrange(len(CLASS_NAMES))
    return Feedback(
        id=uuid.uuid4(),
        prediction_id=row.id,
        is_correct=right,
        correct_class_id=truth,
        correct_class_name=None if truth is None else CLASS_NAMES[truth],
        feedback_source=rng.choice(SOURCES),
        timestamp=when,
    )


def seed(session: Session, *, seed: int = 7) -> None:
    """Forty days of random traffic up to NOW: users coming and going, some verdicts late."""
    rng = random.Random(seed)
    rows, verdicts = [], []
    for number in range(40):
        joined = rng.randrange(DAYS + 1)  # days before today the user starts
        for _ in range(rng.randrange(1, 30)):
            ago = rng.randint(0, joined)
            when = midnight(ago) + timedelta(seconds=rng.randrange(86_400))
            if when >= NOW:
                continue
            row = prediction(f"user-{number}", when, rng)
            rows.append(row)
            for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
                # Mostly within two days; now and then one stamped just before its prediction.
                late = timedelta(hours=rng.uniform(-0.5, 48))
                verdicts.append(verdict(row, min(when + late, NOW - timedelta(seconds=1)), rng))
    session.add_all(rows)
    session.flush()
    session.add_all(verdicts)
    session.commit()


def roll_up(session: Session, *, today: date) -> rollups.RollupRun:
    """Run the job in a session of its own, as the scheduler does."""
    return rollups.roll_up(db.make_sessionmaker(session.get_bind()), today=today)


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = migrated_engine(database_url)
    with db.make_sessionmaker(engine)() as opened:
        seed(opened)
        yield opened
    engine.dispose()


PERIODS = {
    "the default 30 days": Period(NOW - timedelta(days=30), NOW),
    "from a midnight to now": Period(midnight(35), NOW),
    "whole rolled days only": Period(midnight(30), midnight(10)),
    "mid-day to mid-day in the past": Period(
        midnight(25) + timedelta(hours=7, minutes=13), midnight(12) + timedelta(hours=18)
    ),
    "part of today": Period(NOW - timedelta(hours=3), NOW),
    "part of one past day": Period(
        midnight(5) + timedelta(hours=2), midnight(5) + timedelta(hours=20)
    ),
    "before any traffic": Period(midnight(60), midnight(50)),
}


def quality_figures(windows: list[WindowQuality]) -> list[dict[str, Any]]:
    """Every figure of each window; confidence sums to 9 places (the order of adding differs)."""
    figures = []
    for entry in windows:
        values = asdict(entry)
        for name in ("confidence_sum", "confidence_sum_correct", "confidence_sum_incorrect"):
            values[name] = round(values[name], 9)
        figures.append(values)
    return figures


def assert_same_as_live(session: Session, period: Period, name: str = "") -> None:
    rolled_up = usage.usage_report(session, period=period)
    assert rolled_up == usage.usage_report(session, period=period, live=True), name
    cohorts = usage.retention(session, period=period)
    assert cohorts == usage.retention(session, period=period, live=True), name
    ranges = {"period": (period.start, period.end)}
    assert quality_figures(window_quality(session, ranges=ranges)) == quality_figures(
        window_quality(session, ranges=ranges, live=True)
    ), name


def test_rolled_up_figures_are_the_live_ones(session: Session) -> None:
    assert roll_up(session, today=TODAY).days[-1] == TODAY - timedelta(days=1)
    for name, period in PERIODS.items():
        assert_same_as_live(session, period, name)


def test_windows_moments_and_rates_are_the_live_ones(session: Session) -> None:
    roll_up(session, today=TODAY)
    windows = request_ranges(start=None, end=None, now=NOW)
    for version in (None, "2"):
        rolled_up = window_quality(session, ranges=windows, model_version=version)
        live = window_quality(session, ranges=windows, model_version=version, live=True)
        assert quality_figures(rolled_up) == quality_figures(live)
    for moment in (NOW, midnight(3), midnight(12) + timedelta(hours=9, minutes=1)):
        assert usage.active_users(session, as_of=moment) == usage.active_users(
            session, as_of=moment, live=True
        )
        since = moment - timedelta(days=7, hours=5)
        assert usage.judged_predictions(
            session, since=since, until=moment
        ) == usage.judged_predictions(session, since=since, until=moment, live=True)


def test_a_day_not_rolled_up_yet_is_read_live(session: Session) -> None:
    # The job last ran yesterday: yesterday is read from the rows, the days before it rolled.
    roll_up(session, today=TODAY - timedelta(days=1))
    assert_same_as_live(session, PERIODS["the default 30 days"])
    assert_same_as_live(session, PERIODS["from a midnight to now"])


def test_late_rows_on_a_rolled_day_show_after_the_next_rollup(session: Session) -> None:
    roll_up(session, today=TODAY)
    assert roll_up(session, today=TODAY).days == []  # nothing changed, nothing redone
    period = Period(midnight(20), NOW)
    before = usage.usage_report(session, period=period)
    quality_before = window_quality(session, ranges={"p": (period.start, period.end)})
    # A replayed prediction from 12 days ago by a new user, and a verdict today on an old one.
    rng = random.Random(1)
    late = prediction("replayed-user", midnight(12) + timedelta(hours=10), rng)
    session.add(late)
    old = session.scalars(
        select(Prediction)
        .where(
            Prediction.timestamp >= midnight(19),
            Prediction.timestamp < midnight(15),
            ~Prediction.id.in_(select(Feedback.prediction_id)),
        )
        .order_by(Prediction.timestamp.desc())
        .limit(1)
    ).one()
    session.add(verdict(old, NOW - timedelta(minutes=5), rng))
    session.commit()

    # Until the next rollup the rolled days answer as they were, save the verdict given today.
    stale = usage.usage_report(session, period=period)
    assert stale.total_predictions == before.total_predictions
    assert stale.judged_predictions == before.judged_predictions + 1
    assert window_quality(session, ranges={"p": (period.start, period.end)}) == quality_before

    redone = roll_up(session, today=TODAY).days
    assert redone == sorted({TODAY - timedelta(days=12), old.timestamp.date()})
    fresh = usage.usage_report(session, period=period)
    assert fresh.total_predictions == before.total_predictions + 1
    assert fresh.users == before.users + 1
    new_day = next(entry for entry in fresh.daily if entry.day == TODAY - timedelta(days=12))
    assert new_day.new_users == 1 + next(
        entry.new_users for entry in before.daily if entry.day == new_day.day
    )
    quality_after = window_quality(session, ranges={"p": (period.start, period.end)})
    assert sum(entry.reviewed for entry in quality_after) == 1 + sum(
        entry.reviewed for entry in quality_before
    )
    assert_same_as_live(session, period)


def test_a_replay_older_than_every_rolled_day_is_read_live_until_rolled(session: Session) -> None:
    roll_up(session, today=TODAY)
    old = prediction("user-0", midnight(DAYS + 30), random.Random(2))
    session.add(old)
    session.commit()
    # The per-user summaries no longer know who came first: new users are counted live.
    assert rollups.rolled_days(session, start=midnight(30), end=NOW).complete_until is None
    assert_same_as_live(session, PERIODS["from a midnight to now"])
    roll_up(session, today=TODAY)
    held = rollups.rolled_days(session, start=midnight(30), end=NOW)
    assert held.complete_until == TODAY
    assert_same_as_live(session, PERIODS["from a midnight to now"])


def test_the_rollup_keeps_what_it_counted(session: Session) -> None:
    run = roll_up(session, today=TODAY)
    first = min(run.days)
    assert run.days == [first + timedelta(days=n) for n in range((TODAY - first).days)]
    stored = session.scalar(select(func.sum(RollupDay.predictions)))
    live = session.scalar(select(func.count()).where(Prediction.timestamp < midnight(0)))
    assert stored == live
    users = session.scalar(
        select(func.count(func.distinct(Prediction.user_id))).where(
            Prediction.timestamp < midnight(0)
        )
    )
    assert session.scalar(select(func.count()).select_from(UsageUser)) == users


def test_runs_helpers() -> None:
    days = [date(2026, 5, 1), date(2026, 5, 2), date(2026, 5, 4)]
    assert rollups.runs(days) == [(days[0], days[1]), (days[2], days[2])]
    start, end = midnight(10) + timedelta(hours=5), midnight(7) + timedelta(hours=1)
    covered = [(TODAY - timedelta(days=n)) for n in (9, 8)]
    assert rollups.gaps(start, end, covered) == [(start, midnight(9)), (midnight(7), end)]
    assert rollups.gaps(start, end, []) == [(start, end)]
