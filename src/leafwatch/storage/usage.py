"""Usage analytics: who uses LeafWatch, when and how much, aggregated in SQL on both databases.

Days and hours are UTC. A period is `[start, end)`. Figures per day (the daily series, new and
returning users, retention cohorts, classes per day) cover whole days: every day the period
touches, from that first day's midnight up to `end`. The other figures cover the exact period.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Date, Integer, and_, case, cast, distinct, func, literal, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from leafwatch.errors import InvalidPeriod
from leafwatch.storage.tables import Feedback, Prediction

DAY = timedelta(days=1)
ACTIVE_WINDOWS = {"1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
MAX_PERIOD = timedelta(days=366)
DEFAULT_PERIOD = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open UTC interval `[start, end)`."""

    start: datetime
    end: datetime

    def days(self) -> list[date]:
        """Every UTC day the period touches, in order."""
        first, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        return [first + index * DAY for index in range((last - first).days + 1)]


def parse_period(
    start: str | None, end: str | None, *, now: datetime, max_length: timedelta = MAX_PERIOD
) -> Period:
    """Read `from`/`to` (ISO dates or datetimes, UTC when no offset) into a period ending by now.

    A date alone means the whole day: `from` at its midnight, `to` at the next. An end in the
    future is cut to `now`; the default is the `DEFAULT_PERIOD` ending now.
    """
    until = min(_parse_moment(end, "to", end_of_day=True), now) if end else now
    since = _parse_moment(start, "from", end_of_day=False) if start else until - DEFAULT_PERIOD
    if since >= until:
        raise InvalidPeriod(
            f"from ({since.isoformat()}) must be before to ({until.isoformat()}, "
            "or now when to is later or not given)"
        )
    if until - since > max_length:
        raise InvalidPeriod(
            f"the period from {since.isoformat()} to {until.isoformat()} is "
            f"{(until - since) / DAY:.1f} days long; at most {max_length / DAY:g} days are allowed"
        )
    return Period(since, until)


def _parse_moment(text: str, name: str, *, end_of_day: bool) -> datetime:
    text = text.strip()
    try:
        if len(text) == 10:  # YYYY-MM-DD: a whole day
            day = date.fromisoformat(text)
            return datetime.combine(day + DAY if end_of_day else day, time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidPeriod(
            f"{name}={text[:64]!r} is not an ISO 8601 date (2026-03-01) "
            "or datetime (2026-03-01T12:00:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- expressions that mean the same on PostgreSQL and SQLite --------------------------------


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _day(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC day of a stored timestamp (a date on PostgreSQL, 'YYYY-MM-DD' on SQLite)."""
    if dialect == "postgresql":
        # timestamptz: take the UTC wall time, whatever the session's time zone is.
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite stores the UTC wall time as text


def _hour(column: Any, dialect: str) -> ColumnElement[int]:
    """The UTC hour of day, 0-23, of a stored timestamp."""
    if dialect == "postgresql":
        return cast(func.extract("hour", func.timezone("UTC", column)), Integer)
    return cast(func.strftime("%H", column), Integer)


def _days_between(later: Any, earlier: Any, dialect: str) -> ColumnElement[int]:
    """Whole days from one day expression to another."""
    if dialect == "postgresql":
        return cast(later - earlier, Integer)  # date - date is an integer
    return cast(func.julianday(later) - func.julianday(earlier), Integer)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.date(), time(), UTC)


def _in(start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(Prediction.timestamp >= start, Prediction.timestamp < end)


# --- figures ---------------------------------------------------------------------------------


def active_users(session: Session, *, as_of: datetime) -> dict[str, int]:
    """Distinct users with a prediction in the last day, 7 and 30 days before `as_of`."""
    since = {name: as_of - length for name, length in ACTIVE_WINDOWS.items()}
    return _seen_since(session, since=since, end=as_of)


def _seen_since(session: Session, *, since: dict[str, datetime], end: datetime) -> dict[str, int]:
    """For each named start, the users with a prediction in `[start, end)`; one scan for all.

    Each user's last prediction is found first (a hash aggregate), then counted per start:
    PostgreSQL sorts for every count(DISTINCT ...), which costs more than the scan.
    """
    last = (
        select(func.max(Prediction.timestamp).label("last_at"))
        .where(_in(min(since.values()), end))
        .group_by(Prediction.user_id)
        .subquery("last_seen")
    )
    columns = [func.count(case((last.c.last_at >= start, 1))) for start in since.values()]
    counts = session.execute(select(*columns)).one()
    return {name: int(count) for name, count in zip(since, counts, strict=True)}


def judged_predictions(session: Session, *, since: datetime, until: datetime) -> tuple[int, int]:
    """Predictions made in `[since, until)`, and how many have a verdict given before `until`."""
    total = session.scalar(select(func.count()).where(_in(since, until))) or 0
    return total, _judged(session, since=since, until=until) if total else 0


def feedback_rate(session: Session, *, since: datetime, until: datetime) -> float | None:
    """Share of predictions made in `[since, until)` with a verdict given before `until`."""
    total, judged = judged_predictions(session, since=since, until=until)
    return judged / total if total else None


def _judged(session: Session, *, since: datetime, until: datetime) -> int:
    """Predictions made in `[since, until)` with at least one verdict given before `until`.

    Read from the verdicts' side: a verdict is given after its prediction, so only verdicts of
    the period can count, and there are far fewer of them than predictions.
    """
    query = (
        select(func.count(distinct(Feedback.prediction_id)))
        .select_from(Feedback)
        .join(Prediction, Prediction.id == Feedback.prediction_id)
        .where(Feedback.timestamp >= since, Feedback.timestamp < until, _in(since, until))
    )
    return int(session.scalar(query) or 0)


@dataclass(frozen=True, slots=True)
class LocationUsage:
    """Predictions and users at one `user_location`."""

    location: str
    predictions: int
    users: int


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One UTC day: predictions, active users, new and returning users, predicted classes."""

    day: date
    predictions: int
    active_users: int
    new_users: int
    classes: dict[str, int]

    @property
    def returning_users(self) -> int:
        """Active users whose first prediction was on an earlier day."""
        return self.active_users - self.new_users


@dataclass
class UsageReport:
    """Every usage figure of a period."""

    period: Period
    total_predictions: int = 0
    users: int = 0
    judged_predictions: int = 0
    located_predictions: int = 0
    active_users: dict[str, int] = field(default_factory=dict)
    peak_hours: list[int] = field(default_factory=lambda: [0] * 24)
    locations: list[LocationUsage] = field(default_factory=list)
    daily: list[DayUsage] = field(default_factory=list)

    @property
    def feedback_rate(self) -> float | None:
        """Share of the period's predictions that received at least one verdict."""
        return self.judged_predictions / self.total_predictions if self.total_predictions else None


def usage_report(session: Session, *, period: Period, top_locations: int = 10) -> UsageReport:
    """Totals, active users at the period's end, peak hours, top locations and the daily series."""
    dialect = _dialect(session)
    report = UsageReport(period=period)
    start, end, midnight = period.start, period.end, _midnight(period.start)
    # Counts by (day, hour, class) over whole days; `inside` marks what is in the exact period.
    day, hour = _day(Prediction.timestamp, dialect), _hour(Prediction.timestamp, dialect)
    inside = case((Prediction.timestamp >= start, 1), else_=0)
    counts = (
        select(
            day,
            hour,
            Prediction.predicted_class_name,
            inside,
            func.count(),
            func.count(Prediction.user_location),
        )
        .where(_in(midnight, end))
        .group_by(day, hour, Prediction.predicted_class_name, inside)
    )
    per_day: dict[date, int] = {}
    classes: dict[date, dict[str, int]] = {}
    for value, hour_of_day, name, in_period, count, located in session.execute(counts):
        when = _as_date(value)
        per_day[when] = per_day.get(when, 0) + count
        by_class = classes.setdefault(when, {})
        by_class[name] = by_class.get(name, 0) + count
        if in_period:
            report.total_predictions += count
            report.located_predictions += located
            report.peak_hours[int(hour_of_day)] += count
    seen = _seen_since(
        session, since={"period": start} | {n: end - t for n, t in ACTIVE_WINDOWS.items()}, end=end
    )
    report.users = seen.pop("period")
    report.active_users = seen
    report.judged_predictions = _judged(session, since=start, until=end)
    report.locations = _locations(session, start=start, end=end, limit=top_locations)
    pairs, new = _user_days(midnight, end, dialect)
    users_by_day = (
        select(pairs.c.day, func.count(), func.count(new.c.user_id))
        .select_from(pairs)
        .outerjoin(new, and_(new.c.user_id == pairs.c.user_id, new.c.first_day == pairs.c.day))
        .group_by(pairs.c.day)
    )
    users = {
        _as_date(value): (int(active), int(fresh))
        for value, active, fresh in session.execute(users_by_day)
    }
    report.daily = [
        DayUsage(
            day=when,
            predictions=per_day.get(when, 0),
            active_users=users.get(when, (0, 0))[0],
            new_users=users.get(when, (0, 0))[1],
            classes=dict(sorted(classes.get(when, {}).items())),
        )
        for when in Period(midnight, end).days()
    ]
    return report


def _locations(
    session: Session, *, start: datetime, end: datetime, limit: int
) -> list[LocationUsage]:
    # Per (location, user) first, then per location: hash aggregates instead of a sort.
    per_user = (
        select(Prediction.user_location.label("location"), func.count().label("predictions"))
        .where(_in(start, end), Prediction.user_location.is_not(None))
        .group_by(Prediction.user_location, Prediction.user_id)
        .subquery("per_user")
    )
    predictions = func.sum(per_user.c.predictions).label("total")
    query = (
        select(per_user.c.location, predictions, func.count())
        .group_by(per_user.c.location)
        .order_by(predictions.desc(), per_user.c.location)
        .limit(limit)
    )
    return [
        LocationUsage(str(place), int(count), int(users))
        for place, count, users in session.execute(query)
    ]


def _user_days(start: datetime, end: datetime, dialect: str) -> tuple[Any, Any]:
    """The (user, UTC day) pairs with a prediction in `[start, end)`, and the users new in it.

    `start` is a midnight. A user is new on the first day of their pairs when they have no
    prediction before `start`: one probe of the (user_id, timestamp) index per user active in
    the period, rather than a scan of all history. Both read one scan of the period (a CTE).
    """
    day = _day(Prediction.timestamp, dialect)
    pairs = (
        select(Prediction.user_id, day.label("day"))
        .where(_in(start, end))
        .group_by(Prediction.user_id, day)
        .cte("user_days")
    )
    firsts = (
        select(pairs.c.user_id, func.min(pairs.c.day).label("first_day"))
        .group_by(pairs.c.user_id)
        .subquery("firsts")
    )
    earlier = aliased(Prediction, name="earlier")
    before = (
        select(literal(1))
        .where(earlier.user_id == firsts.c.user_id, earlier.timestamp < start)
        .exists()
    )
    new = select(firsts.c.user_id, firsts.c.first_day).where(~before).subquery("new_users")
    return pairs, new


@dataclass(frozen=True, slots=True)
class Cohort:
    """Users whose first prediction was on one UTC day, and how many came back.

    `d1` counts those with a prediction on the next day, `d7` those with one on any of the seven
    days after; each is None until those days have ended (no partial days are counted).
    """

    day: date
    size: int
    d1: int | None
    d7: int | None

    @property
    def d1_rate(self) -> float | None:
        """Share of the cohort retained on day 1."""
        return self.d1 / self.size if self.d1 is not None and self.size else None

    @property
    def d7_rate(self) -> float | None:
        """Share of the cohort retained within 7 days."""
        return self.d7 / self.size if self.d7 is not None and self.size else None


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """Daily cohorts of a period, with D1 and D7 retention over the cohorts that can show them."""

    period: Period
    cohorts: list[Cohort]

    def overall(self, days: int) -> tuple[int, int, float | None]:
        """Users retained, cohort users counted, and the rate, for day-1 or day-7 retention."""
        measured = [
            (c.size, c.d1 if days == 1 else c.d7)
            for c in self.cohorts
            if (c.d1 if days == 1 else c.d7) is not None
        ]
        size = sum(s for s, _ in measured)
        kept = sum(k or 0 for _, k in measured)
        return kept, size, (kept / size if size else None)


def retention(session: Session, *, period: Period) -> RetentionReport:
    """D1 and D7 retention of each daily cohort of new users in the period.

    Figures are as of the period's end: a prediction after `end` does not count.
    """
    dialect = _dialect(session)
    start, end = _midnight(period.start), period.end
    pairs, new = _user_days(start, end, dialect)
    after = _days_between(pairs.c.day, new.c.first_day, dialect)
    # Per cohort user first (came back on day 1? within 7?), then per cohort: no DISTINCT sorts.
    per_user = (
        select(
            new.c.first_day.label("cohort_day"),
            func.max(case((after == 1, 1), else_=0)).label("d1"),
            func.max(case((after >= 1, 1), else_=0)).label("d7"),
        )
        .select_from(new)
        .outerjoin(pairs, and_(pairs.c.user_id == new.c.user_id, after >= 1, after <= 7))
        .group_by(new.c.user_id, new.c.first_day)
        .subquery("per_user")
    )
    query = select(
        per_user.c.cohort_day, func.count(), func.sum(per_user.c.d1), func.sum(per_user.c.d7)
    ).group_by(per_user.c.cohort_day)
    found = {
        _as_date(value): (int(size), int(d1), int(d7))
        for value, size, d1, d7 in session.execute(query)
    }
    result = []
    for when in Period(start, end).days():
        size, d1, d7 = found.get(when, (0, 0, 0))
        midnight = datetime.combine(when, time(), UTC)
        result.append(
            Cohort(
                day=when,
                size=size,
                d1=d1 if midnight + 2 * DAY <= end else None,
                d7=d7 if midnight + 8 * DAY <= end else None,
            )
        )
    return RetentionReport(period=period, cohorts=result)
