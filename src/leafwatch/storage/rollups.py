"""Daily rollups: usage and quality of whole past UTC days, so analytics read days, not rows.

The rollup job stores, per UTC day before today, the counts the analytics need (see tables.py:
`rollup_days`, `usage_*`, `quality_day_cells`) and, per user, the first and last day. Readers take
whole rolled days from these tables and query live only what they do not cover: today, the
partial days at a period's edges, days not rolled yet.

Past days are not immutable: a verdict can arrive for an old prediction, a replay can insert old
predictions. Each rolled day keeps the number of predictions and verdicts it was computed from;
every run counts them again (one pass over the timestamp index and one join of the verdicts) and
rolls up anew every day whose counts differ. A late row shows in the analytics after the next run.
"""

import time as clock
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    Integer,
    and_,
    case,
    cast,
    delete,
    exists,
    false,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from leafwatch.storage import quality
from leafwatch.storage.tables import (
    Feedback,
    Prediction,
    QualityDayCell,
    RollupDay,
    UsageHour,
    UsageJudged,
    UsageLocation,
    UsageLocationSpan,
    UsageLocationUser,
    UsageUser,
    UsageUserDay,
    utcnow,
)

DAY = timedelta(days=1)
Ranges = Sequence[tuple[datetime, datetime]]


# --- UTC days in SQL, the same on PostgreSQL and SQLite --------------------------------------


def day_of(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC day of a stored timestamp (a date on PostgreSQL, 'YYYY-MM-DD' on SQLite)."""
    if dialect == "postgresql":
        # timestamptz: take the UTC wall time, whatever the session's time zone is.
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite stores the UTC wall time as text


def hour_of(column: Any, dialect: str) -> ColumnElement[int]:
    """The UTC hour of day, 0-23, of a stored timestamp."""
    if dialect == "postgresql":
        return cast(func.extract("hour", func.timezone("UTC", column)), Integer)
    return cast(func.strftime("%H", column), Integer)


def days_between(later: Any, earlier: Any, dialect: str) -> ColumnElement[int]:
    """Whole days from one day expression to another."""
    if dialect == "postgresql":
        return cast(later - earlier, Integer)  # date - date is an integer
    return cast(func.julianday(later) - func.julianday(earlier), Integer)


def as_date(value: date | str) -> date:
    """A day read back from SQL (SQLite gives text for an expression)."""
    return value if isinstance(value, date) else date.fromisoformat(value)


def midnight(day: date) -> datetime:
    """The start of a UTC day."""
    return datetime.combine(day, time(), UTC)


def first_whole_day(moment: datetime) -> date:
    """The first UTC day that starts at or after `moment`."""
    return moment.date() if moment == midnight(moment.date()) else moment.date() + DAY


def in_ranges(column: Any, ranges: Ranges) -> ColumnElement[bool]:
    """The timestamp falls in one of the half-open ranges (none: false)."""
    return or_(false(), *(and_(column >= start, column < end) for start, end in ranges))


def on_days(column: Any, days: Iterable[date]) -> ColumnElement[bool]:
    """The day column is one of `days`, as a few BETWEENs (the days mostly run on)."""
    return or_(false(), *(column.between(first, last) for first, last in runs(days)))


def runs(days: Iterable[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) pairs, in order."""
    found: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if found and found[-1][1] + DAY == day:
            found[-1] = (found[-1][0], day)
        else:
            found.append((day, day))
    return found


def day_ranges(days: Iterable[date]) -> list[tuple[datetime, datetime]]:
    """The days as merged [midnight, midnight) ranges."""
    return [(midnight(first), midnight(last) + DAY) for first, last in runs(days)]


def gaps(
    start: datetime, end: datetime, covered: Iterable[date]
) -> list[tuple[datetime, datetime]]:
    """[start, end) without the covered days, as ordered ranges."""
    pieces, cursor = [], start
    for first, last in day_ranges(covered):
        if first > cursor:
            pieces.append((cursor, min(first, end)))
        cursor = max(cursor, last)
    if cursor < end:
        pieces.append((cursor, end))
    return [(low, high) for low, high in pieces if low < high]


def merge(ranges: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching ranges joined, in order."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


# --- what a reader may take from the rollups -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rolled:
    """The rolled-up days around a period, and how far the per-user summaries can be trusted."""

    days: frozenset[date] = frozenset()
    # The last rolled day of all, and the day up to which (not included) every day since the
    # first prediction is rolled up: then `usage_users` holds each user's true first day.
    last: date | None = None
    complete_until: date | None = None

    def whole(self, start: datetime, end: datetime) -> list[date]:
        """The rolled days that lie wholly in [start, end), in order."""
        first, stop = first_whole_day(start), end.date()
        return sorted(day for day in self.days if first <= day < stop)


LIVE = Rolled()  # nothing rolled: every figure from the rows themselves


def rolled_days(session: Session, *, start: datetime, end: datetime) -> Rolled:
    """What the rollups hold for a read of [start, end)."""
    days = frozenset(
        as_date(day)
        for day in session.scalars(
            select(RollupDay.day).where(RollupDay.day >= start.date(), RollupDay.day <= end.date())
        )
    )
    first, last, count = session.execute(
        select(func.min(RollupDay.day), func.max(RollupDay.day), func.count())
    ).one()
    if first is None:
        return Rolled(days)
    first, last = as_date(first), as_date(last)
    until = last + DAY
    if count != (until - first).days:  # a hole: only days before it are complete
        every = [as_date(day) for day in session.scalars(select(RollupDay.day))]
        until = runs(every)[0][1] + DAY
    oldest = session.scalar(select(func.min(Prediction.timestamp)))
    # A prediction older than the first rolled day (a replay) makes every first day unsure.
    complete = oldest is None or oldest >= midnight(first)
    return Rolled(days, last, until if complete else None)


# --- the job ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RollupRun:
    """What one rollup did: the days it rolled up (anew or for the first time) and its time."""

    days: list[date]
    seconds: float


def roll_up(sessions: sessionmaker[Session], *, today: date | None = None) -> RollupRun:
    """Roll up every day before `today` (UTC) that is new or changed since, in one transaction.

    The counts stored with a day are those of the rows rolled up: on PostgreSQL the run reads
    one snapshot (REPEATABLE READ); on SQLite the write lock, taken by the first delete, keeps
    other writers out until the commit.
    """
    began = clock.perf_counter()
    today = today or utcnow().date()
    with sessions() as session:
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        dirty = changed_days(session, today=today, dialect=dialect)
        if dirty:
            roll_days(session, days=dirty, dialect=dialect)
        session.commit()
    return RollupRun(dirty, clock.perf_counter() - began)


def changed_days(session: Session, *, today: date, dialect: str) -> list[date]:
    """Days before today whose predictions or verdicts differ in number from their rollup."""
    before = Prediction.timestamp < midnight(today)
    day = day_of(Prediction.timestamp, dialect)
    live: dict[date, list[int]] = {
        as_date(value): [int(count), 0]
        for value, count in session.execute(select(day, func.count()).where(before).group_by(day))
    }
    verdicts = (
        select(day, func.count())
        .select_from(Feedback)
        .join(Prediction, Prediction.id == Feedback.prediction_id)
        .where(before)
        .group_by(day)
    )
    for value, count in session.execute(verdicts):
        live[as_date(value)][1] = int(count)
    stored = {
        as_date(value): [predictions, verdicts]
        for value, predictions, verdicts in session.execute(
            select(RollupDay.day, RollupDay.predictions, RollupDay.verdicts)
        )
    }
    known = [day for day in (*live, *stored) if day < today]
    if not known:
        return []
    # Every day from the first one on, empty days too: readers then find no hole to fill live.
    first = min(known)
    every = [first + index * DAY for index in range((today - first).days)]
    return [day for day in every if live.get(day, [0, 0]) != stored.get(day)]


def roll_days(session: Session, *, days: Sequence[date], dialect: str) -> None:
    """Replace the rollups of these days by what their rows say now; no commit."""
    ranges = day_ranges(days)
    rows = in_ranges(Prediction.timestamp, ranges)
    day = day_of(Prediction.timestamp, dialect)
    touched = select(UsageUserDay.user_id).where(on_days(UsageUserDay.day, days))
    placed = select(UsageLocationUser.user_id).where(on_days(UsageLocationUser.day, days))
    # The summaries of users seen on these days, before and after, are built again at the end.
    session.execute(delete(UsageUser).where(UsageUser.user_id.in_(touched)))
    session.execute(delete(UsageLocationSpan).where(UsageLocationSpan.user_id.in_(placed)))
    daily = (UsageHour, UsageUserDay, UsageLocation, UsageLocationUser, UsageJudged)
    for table in (*daily, QualityDayCell):
        session.execute(delete(table).where(on_days(table.day, days)))
    session.execute(delete(RollupDay).where(on_days(RollupDay.day, days)))

    hour = hour_of(Prediction.timestamp, dialect)
    session.execute(
        insert(UsageHour).from_select(
            ["day", "hour", "predicted_class_name", "predictions", "located"],
            select(
                day,
                hour,
                Prediction.predicted_class_name,
                func.count(),
                func.count(Prediction.user_location),
            )
            .where(rows)
            .group_by(day, hour, Prediction.predicted_class_name),
        )
    )
    session.execute(
        insert(UsageUserDay).from_select(
            ["day", "user_id"],
            select(day, Prediction.user_id).where(rows).group_by(day, Prediction.user_id),
        )
    )
    session.execute(
        insert(UsageLocationUser).from_select(
            ["day", "user_location", "user_id", "predictions"],
            select(day, Prediction.user_location, Prediction.user_id, func.count())
            .where(rows, Prediction.user_location.is_not(None))
            .group_by(day, Prediction.user_location, Prediction.user_id),
        )
    )
    session.execute(
        insert(UsageLocation).from_select(
            ["day", "user_location", "predictions"],
            select(day, Prediction.user_location, func.count())
            .where(rows, Prediction.user_location.is_not(None))
            .group_by(day, Prediction.user_location),
        )
    )
    first_verdicts = (
        select(day.label("day"), func.min(Feedback.timestamp).label("first_at"))
        .select_from(Prediction)
        .join(Feedback, Feedback.prediction_id == Prediction.id)
        .where(rows)
        .group_by(Prediction.id, day)
        .subquery("first_verdicts")
    )
    verdict_day = day_of(first_verdicts.c.first_at, dialect)
    session.execute(
        insert(UsageJudged).from_select(
            ["day", "verdict_day", "predictions"],
            select(first_verdicts.c.day, verdict_day, func.count()).group_by(
                first_verdicts.c.day, verdict_day
            ),
        )
    )
    session.execute(
        insert(QualityDayCell).from_select(
            [
                "day",
                "model_version",
                "predicted_class_id",
                "is_correct",
                "true_class_id",
                "predictions",
                "confidence_sum",
            ],
            quality.day_cells(ranges=ranges, day=day),
        )
    )
    session.execute(delete(UsageUser).where(UsageUser.user_id.in_(touched)))
    session.execute(insert(UsageUser).from_select(list(SUMMARY), summaries(dialect)))
    session.execute(delete(UsageLocationSpan).where(UsageLocationSpan.user_id.in_(placed)))
    session.execute(
        insert(UsageLocationSpan).from_select(
            ["user_location", "user_id", "last_day"], location_spans()
        )
    )
    _record_days(session, days=days, rows=rows, day=day)


SUMMARY = ("user_id", "first_day", "last_day", "back_next_day", "back_within_week")


def summaries(dialect: str) -> Any:
    """First and last day, and came back the next day / within a week, of users lacking one."""
    lacking = ~exists().where(UsageUser.user_id == UsageUserDay.user_id)
    spans = (
        select(
            UsageUserDay.user_id,
            func.min(UsageUserDay.day).label("first_day"),
            func.max(UsageUserDay.day).label("last_day"),
        )
        .where(lacking)
        .group_by(UsageUserDay.user_id)
        .subquery("spans")
    )
    later = aliased(UsageUserDay, name="later")
    after = days_between(later.day, spans.c.first_day, dialect)
    return (
        select(
            spans.c.user_id,
            spans.c.first_day,
            spans.c.last_day,
            func.coalesce(func.max(case((after == 1, 1), else_=0)), 0) > 0,
            func.count(later.user_id) > 0,
        )
        .select_from(spans)
        .outerjoin(later, and_(later.user_id == spans.c.user_id, after >= 1, after <= 7))
        .group_by(spans.c.user_id, spans.c.first_day, spans.c.last_day)
    )


def location_spans() -> Any:
    """The last day at each location of the (location, user) pairs lacking one."""
    lacking = ~exists().where(
        UsageLocationSpan.user_location == UsageLocationUser.user_location,
        UsageLocationSpan.user_id == UsageLocationUser.user_id,
    )
    return (
        select(
            UsageLocationUser.user_location,
            UsageLocationUser.user_id,
            func.max(UsageLocationUser.day),
        )
        .where(lacking)
        .group_by(UsageLocationUser.user_location, UsageLocationUser.user_id)
    )


def _record_days(
    session: Session, *, days: Sequence[date], rows: ColumnElement[bool], day: ColumnElement[Any]
) -> None:
    """Store each day's counts as rolled up: the next run compares them with the rows."""
    figures = {one: [0, 0, 0] for one in days}
    queries = (
        select(day, func.count()).where(rows).group_by(day),
        select(day, func.count())
        .select_from(Feedback)
        .join(Prediction, Prediction.id == Feedback.prediction_id)
        .where(rows)
        .group_by(day),
        select(UsageUserDay.day, func.count())
        .where(on_days(UsageUserDay.day, days))
        .group_by(UsageUserDay.day),
    )
    for index, query in enumerate(queries):
        for value, count in session.execute(query):
            figures[as_date(value)][index] = int(count)
    now = utcnow()
    session.execute(
        insert(RollupDay),
        [
            {
                "day": one,
                "predictions": predictions,
                "verdicts": verdicts,
                "active_users": users,
                "rolled_at": now,
            }
            for one, (predictions, verdicts, users) in figures.items()
        ],
    )
