"""Usage analytics: who uses LeafWatch, when and how much, aggregated in SQL on both databases.

Days and hours are UTC. A period is `[start, end)`. Figures per day (the daily series, new and
returning users, retention cohorts, classes per day) cover whole days: every day the period
touches, from that first day's midnight up to `end`. The other figures cover the exact period.

Whole days held by the daily rollups (storage/rollups.py) are read from them, the rest of a
period from the predictions themselves; `live=True` reads everything from the predictions. Both
give the same figures, but a rolled-up day shows late rows only after the next rollup.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, literal, select, union, union_all
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from leafwatch.errors import InvalidPeriod
from leafwatch.storage.rollups import (
    LIVE,
    Rolled,
    as_date,
    day_of,
    day_ranges,
    days_between,
    first_whole_day,
    gaps,
    hour_of,
    in_ranges,
    merge,
    midnight,
    on_days,
    rolled_days,
)
from leafwatch.storage.tables import (
    Feedback,
    Prediction,
    RollupDay,
    UsageHour,
    UsageJudged,
    UsageLocation,
    UsageLocationSpan,
    UsageLocationUser,
    UsageUser,
    UsageUserDay,
)

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


# --- helpers ----------------------------------------------------------------------------------


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _held(session: Session, *, start: datetime, end: datetime, live: bool) -> Rolled:
    return LIVE if live else rolled_days(session, start=start, end=end)


def _count(session: Session, *, pieces: list[tuple[datetime, datetime]]) -> int:
    if not pieces:
        return 0
    query = select(func.count()).select_from(Prediction)
    return int(session.scalar(query.where(in_ranges(Prediction.timestamp, pieces))) or 0)


# --- figures ---------------------------------------------------------------------------------


def active_users(session: Session, *, as_of: datetime, live: bool = False) -> dict[str, int]:
    """Distinct users with a prediction in the last day, 7 and 30 days before `as_of`."""
    since = {name: as_of - length for name, length in ACTIVE_WINDOWS.items()}
    held = _held(session, start=min(since.values()), end=as_of, live=live)
    return _seen_since(session, since=since, end=as_of, held=held)


def _seen_since(
    session: Session, *, since: dict[str, datetime], end: datetime, held: Rolled
) -> dict[str, int]:
    """For each named start, the users with a prediction in `[start, end)`; one query for all.

    Each user's latest start reached (a level: 1 for the earliest start, 2 for the next...) is
    found first (a hash aggregate), then counted per start: PostgreSQL sorts for every
    count(DISTINCT ...), which costs more than the scan. Rolled days give a user's level by
    the day (a whole day counts for the starts at or before its midnight), the rest by the row.
    """
    bounds = sorted(set(since.values()))
    covered = held.whole(bounds[0], end)
    # A start inside a rolled day: the part of that day after it is read from the rows.
    inside = [(start, midnight(start.date()) + DAY) for start in bounds]
    pieces = merge(
        gaps(bounds[0], end, covered)
        + [(low, high) for low, high in inside if low.date() in covered and high - low < DAY]
    )
    levels = list(reversed(list(enumerate(bounds, start=1))))
    parts: list[Any] = []
    if pieces:
        level = case(*((Prediction.timestamp >= bound, n) for n, bound in levels), else_=0)
        parts.append(
            select(Prediction.user_id.label("user_id"), func.max(level).label("level"))
            .where(in_ranges(Prediction.timestamp, pieces))
            .group_by(Prediction.user_id)
        )
    if covered and held.last is not None and held.last < end.date():
        # Every rolled day ends before `end`: a user's last rolled day is the one that counts.
        last_day = _day_level(UsageUser.last_day, levels)
        parts.append(
            select(UsageUser.user_id.label("user_id"), last_day.label("level")).where(
                UsageUser.last_day >= first_whole_day(bounds[0])
            )
        )
    elif covered:
        best_day = func.max(_day_level(UsageUserDay.day, levels))
        parts.append(
            select(UsageUserDay.user_id.label("user_id"), best_day.label("level"))
            .where(on_days(UsageUserDay.day, covered))
            .group_by(UsageUserDay.user_id)
        )
    found = union_all(*parts).subquery("found") if len(parts) > 1 else parts[0].subquery("found")
    last = (
        select(func.max(found.c.level).label("level"))
        .group_by(found.c.user_id)
        .subquery("last_seen")
    )
    counts = session.execute(
        select(*(func.count(case((last.c.level >= n, 1))) for n, _ in reversed(levels)))
    ).one()
    return {name: int(counts[bounds.index(start)]) for name, start in since.items()}


def _day_level(day: Any, levels: list[tuple[int, datetime]]) -> ColumnElement[int]:
    return case(*((day >= first_whole_day(bound), n) for n, bound in levels), else_=0)


def judged_predictions(
    session: Session, *, since: datetime, until: datetime, live: bool = False
) -> tuple[int, int]:
    """Predictions made in `[since, until)`, and how many have a verdict given before `until`."""
    held = _held(session, start=since, end=until, live=live)
    covered = held.whole(since, until)
    total = _count(session, pieces=gaps(since, until, covered))
    if covered:
        stored = select(func.coalesce(func.sum(RollupDay.predictions), 0))
        total += int(session.scalar(stored.where(on_days(RollupDay.day, covered))) or 0)
    return total, _judged(session, since=since, until=until, held=held) if total else 0


def feedback_rate(
    session: Session, *, since: datetime, until: datetime, live: bool = False
) -> float | None:
    """Share of predictions made in `[since, until)` with a verdict given before `until`."""
    total, judged = judged_predictions(session, since=since, until=until, live=live)
    return judged / total if total else None


def _judged(session: Session, *, since: datetime, until: datetime, held: Rolled) -> int:
    """Predictions made in `[since, until)` with at least one verdict given before `until`.

    A rolled day stores its predictions by the day of their first verdict: those before the
    day of `until` count whole; a first verdict on that day is looked up among its verdicts.
    """
    covered = held.whole(since, until)
    pieces = gaps(since, until, covered)
    judged = 0
    if pieces:
        rows = in_ranges(Prediction.timestamp, pieces)
        if covered:
            # A day or two of rows: each probes its verdicts' index (a semi-join would hash
            # every verdict ever given).
            judged_row = _first_verdict(Prediction.id) < until
        else:
            judged_row = exists().where(
                Feedback.prediction_id == Prediction.id, Feedback.timestamp < until
            )
        query = select(func.count()).select_from(Prediction).where(rows, judged_row)
        judged += int(session.scalar(query) or 0)
    if not covered:
        return judged
    stored = select(func.coalesce(func.sum(UsageJudged.predictions), 0)).where(
        on_days(UsageJudged.day, covered), UsageJudged.verdict_day < until.date()
    )
    judged += int(session.scalar(stored) or 0)
    cut = midnight(until.date())
    if until > cut:
        first_today = (
            select(func.count(func.distinct(Feedback.prediction_id)))
            .select_from(Feedback)
            .join(Prediction, Prediction.id == Feedback.prediction_id)
            .where(
                Feedback.timestamp >= cut,
                Feedback.timestamp < until,
                in_ranges(Prediction.timestamp, day_ranges(covered)),
                _first_verdict(Feedback.prediction_id) >= cut,
            )
        )
        judged += int(session.scalar(first_today) or 0)
    return judged


def _first_verdict(prediction_id: Any) -> Any:
    """When the prediction got its first verdict (a correlated subquery: one index probe)."""
    earliest = aliased(Feedback, name="earliest")
    return (
        select(func.min(earliest.timestamp))
        .where(earliest.prediction_id == prediction_id)
        .scalar_subquery()
    )


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


def usage_report(
    session: Session, *, period: Period, top_locations: int = 10, live: bool = False
) -> UsageReport:
    """Totals, active users at the period's end, peak hours, top locations and the daily series."""
    report = UsageReport(period=period)
    start, end, first = period.start, period.end, _midnight(period.start)
    since = {"period": start} | {name: end - length for name, length in ACTIVE_WINDOWS.items()}
    held = _held(session, start=min(first, *since.values()), end=end, live=live)
    per_day: dict[date, int] = {}
    classes: dict[date, dict[str, int]] = {}
    for value, hour_of_day, name, in_period, count, located in _hour_counts(
        session, start=start, end=end, held=held
    ):
        when = as_date(value)
        per_day[when] = per_day.get(when, 0) + count
        by_class = classes.setdefault(when, {})
        by_class[name] = by_class.get(name, 0) + count
        if in_period:
            report.total_predictions += count
            report.located_predictions += located
            report.peak_hours[int(hour_of_day)] += count
    seen = _seen_since(session, since=since, end=end, held=held)
    report.users = seen.pop("period")
    report.active_users = seen
    report.judged_predictions = _judged(session, since=start, until=end, held=held)
    report.locations = _locations(session, start=start, end=end, limit=top_locations, held=held)
    active = _daily_users(session, start=start, end=end, held=held)
    cohorts = _cohorts(session, first=first.date(), end=end, held=held)
    report.daily = [
        DayUsage(
            day=when,
            predictions=per_day.get(when, 0),
            active_users=active.get(when, 0),
            new_users=cohorts.get(when, (0, 0, 0))[0],
            classes=dict(sorted(classes.get(when, {}).items())),
        )
        for when in Period(first, end).days()
    ]
    return report


def _midnight(moment: datetime) -> datetime:
    return midnight(moment.date())


def _hour_counts(
    session: Session, *, start: datetime, end: datetime, held: Rolled
) -> list[tuple[Any, ...]]:
    """Counts by (day, hour, class) over whole days; `inside` marks what is in the exact period."""
    dialect = _dialect(session)
    covered = held.whole(start, end)
    pieces = gaps(_midnight(start), end, covered)
    rows: list[tuple[Any, ...]] = []
    if pieces:
        day, hour = day_of(Prediction.timestamp, dialect), hour_of(Prediction.timestamp, dialect)
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
            .where(in_ranges(Prediction.timestamp, pieces))
            .group_by(day, hour, Prediction.predicted_class_name, inside)
        )
        rows += [tuple(row) for row in session.execute(counts)]
    if covered:
        stored = select(
            UsageHour.day,
            UsageHour.hour,
            UsageHour.predicted_class_name,
            literal(1),
            UsageHour.predictions,
            UsageHour.located,
        ).where(on_days(UsageHour.day, covered))
        rows += [tuple(row) for row in session.execute(stored)]
    return rows


def _locations(
    session: Session, *, start: datetime, end: datetime, limit: int, held: Rolled
) -> list[LocationUsage]:
    """The locations with the most predictions in the period, with their distinct users."""
    covered = held.whole(start, end)
    pieces = gaps(start, end, covered)
    located = Prediction.user_location.is_not(None)
    counts: list[Any] = []
    pairs: list[Any] = []
    if pieces:
        rows = in_ranges(Prediction.timestamp, pieces)
        counts.append(
            select(Prediction.user_location.label("location"), func.count().label("predictions"))
            .where(rows, located)
            .group_by(Prediction.user_location)
        )
        pairs.append(
            select(Prediction.user_location.label("location"), Prediction.user_id.label("user_id"))
            .where(rows, located)
            .group_by(Prediction.user_location, Prediction.user_id)
        )
    if covered:
        counts.append(
            select(
                UsageLocation.user_location.label("location"),
                func.sum(UsageLocation.predictions).label("predictions"),
            )
            .where(on_days(UsageLocation.day, covered))
            .group_by(UsageLocation.user_location)
        )
        pairs.append(_location_pairs(covered, held=held, end=end))
    if not counts:
        return []
    every = union_all(*counts).subquery("counts") if len(counts) > 1 else counts[0].subquery()
    totals = (
        select(every.c.location, func.sum(every.c.predictions).label("predictions"))
        .group_by(every.c.location)
        .subquery("totals")
    )
    both = union(*pairs).subquery("pairs") if len(pairs) > 1 else pairs[0].subquery("pairs")
    users = (
        select(both.c.location, func.count().label("users"))
        .group_by(both.c.location)
        .subquery("users")
    )
    query = (
        select(totals.c.location, totals.c.predictions, users.c.users)
        .join(users, users.c.location == totals.c.location)
        .order_by(totals.c.predictions.desc(), totals.c.location)
        .limit(limit)
    )
    return [
        LocationUsage(str(place), int(count), int(people))
        for place, count, people in session.execute(query)
    ]


def _location_pairs(covered: list[date], *, held: Rolled, end: datetime) -> Any:
    """The (location, user) pairs of the rolled days, from the last-day summary when it fits."""
    if held.last is not None and held.last < end.date():
        # Every rolled day ends before `end`: a pair seen since the first covered day is in.
        return select(
            UsageLocationSpan.user_location.label("location"),
            UsageLocationSpan.user_id.label("user_id"),
        ).where(UsageLocationSpan.last_day >= covered[0])
    return (
        select(
            UsageLocationUser.user_location.label("location"),
            UsageLocationUser.user_id.label("user_id"),
        )
        .where(on_days(UsageLocationUser.day, covered))
        .group_by(UsageLocationUser.user_location, UsageLocationUser.user_id)
    )


def _daily_users(
    session: Session, *, start: datetime, end: datetime, held: Rolled
) -> dict[date, int]:
    """Distinct users per UTC day, over the whole days the period touches."""
    covered = held.whole(start, end)
    pieces = gaps(_midnight(start), end, covered)
    users: dict[date, int] = {}
    if pieces:
        day = day_of(Prediction.timestamp, _dialect(session))
        pairs = (
            select(Prediction.user_id, day.label("day"))
            .where(in_ranges(Prediction.timestamp, pieces))
            .group_by(Prediction.user_id, day)
            .subquery("user_days")
        )
        query = select(pairs.c.day, func.count()).group_by(pairs.c.day)
        users.update({as_date(value): int(count) for value, count in session.execute(query)})
    if covered:
        stored = select(RollupDay.day, RollupDay.active_users)
        users.update(
            {
                as_date(value): int(count)
                for value, count in session.execute(stored.where(on_days(RollupDay.day, covered)))
            }
        )
    return users


def _cohorts(
    session: Session, *, first: date, end: datetime, held: Rolled
) -> dict[date, tuple[int, int, int]]:
    """Per day from `first` on: users whose first prediction ever was that day, how many of them
    came back the next day, and within seven days (figures for days after `end` are partial).

    From the per-user summaries when every day before the last one is rolled up, else live.
    """
    stop = end.date()
    if held.complete_until is None or held.complete_until < stop:
        return _cohorts_live(session, start=midnight(first), end=end)
    counted = case((UsageUser.back_next_day, 1), else_=0)
    kept = case((UsageUser.back_within_week, 1), else_=0)
    query = (
        select(UsageUser.first_day, func.count(), func.sum(counted), func.sum(kept))
        .where(UsageUser.first_day >= first, UsageUser.first_day < stop)
        .group_by(UsageUser.first_day)
    )
    found = {
        as_date(value): (int(size), int(d1), int(d7))
        for value, size, d1, d7 in session.execute(query)
    }
    since = midnight(stop)
    if end > since:  # the last day has begun: its users not seen on any day before are new
        users = (
            select(Prediction.user_id)
            .where(Prediction.timestamp >= since, Prediction.timestamp < end)
            .group_by(Prediction.user_id)
            .subquery("users")
        )
        before = exists().where(UsageUser.user_id == users.c.user_id, UsageUser.first_day < stop)
        size = session.scalar(select(func.count()).select_from(users).where(~before))
        found[stop] = (int(size or 0), 0, 0)
    return found


def _cohorts_live(
    session: Session, *, start: datetime, end: datetime
) -> dict[date, tuple[int, int, int]]:
    """`_cohorts` from the predictions of `[start, end)` alone; `start` is a midnight."""
    dialect = _dialect(session)
    pairs, new = _user_days(start, end, dialect)
    after = days_between(pairs.c.day, new.c.first_day, dialect)
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
    return {
        as_date(value): (int(size), int(d1), int(d7))
        for value, size, d1, d7 in session.execute(query)
    }


def _user_days(start: datetime, end: datetime, dialect: str) -> tuple[Any, Any]:
    """The (user, UTC day) pairs with a prediction in `[start, end)`, and the users new in it.

    `start` is a midnight. A user is new on the first day of their pairs when they have no
    prediction before `start`: one probe of the (user_id, timestamp) index per user active in
    the period, rather than a scan of all history. Both read one scan of the period (a CTE).
    """
    day = day_of(Prediction.timestamp, dialect)
    pairs = (
        select(Prediction.user_id, day.label("day"))
        .where(Prediction.timestamp >= start, Prediction.timestamp < end)
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


def retention(session: Session, *, period: Period, live: bool = False) -> RetentionReport:
    """D1 and D7 retention of each daily cohort of new users in the period.

    Figures are as of the period's end: a prediction after `end` does not count.
    """
    start, end = _midnight(period.start), period.end
    held = _held(session, start=start, end=end, live=live)
    found = _cohorts(session, first=start.date(), end=end, held=held)
    result = []
    for when in Period(start, end).days():
        size, d1, d7 = found.get(when, (0, 0, 0))
        day_start = midnight(when)
        result.append(
            Cohort(
                day=when,
                size=size,
                d1=d1 if day_start + 2 * DAY <= end else None,
                d7=d7 if day_start + 8 * DAY <= end else None,
            )
        )
    return RetentionReport(period=period, cohorts=result)
