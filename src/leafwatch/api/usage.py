"""Usage analytics: who uses the service, when and how much, and who comes back."""

from typing import Annotated

from fastapi import APIRouter, Query

from leafwatch.api.deps import SessionDep
from leafwatch.api.errors import ERROR_RESPONSES
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.schemas_usage import (
    ActiveUsersOut,
    CohortOut,
    DayUsageOut,
    HourOut,
    LocationOut,
    RetentionOut,
    RetentionRateOut,
    UsageOut,
)
from leafwatch.storage import usage
from leafwatch.storage.tables import utcnow

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

From = Annotated[
    str | None,
    Query(
        alias="from",
        description="Start, UTC: an ISO 8601 date (its midnight) or datetime. "
        "Default: 30 days before `to`.",
    ),
]
To = Annotated[
    str | None,
    Query(
        alias="to",
        description="End, UTC: an ISO 8601 date (the whole day is included) or datetime; "
        "cut to now. Default: now. At most 366 days after `from`.",
    ),
]


@router.get("/usage", response_model=UsageOut, responses=ERROR_RESPONSES)
def usage_figures(session: SessionDep, start: From = None, end: To = None) -> UsageOut:
    """Predictions, active users, new and returning users, feedback rate, hours, places, classes."""
    period = usage.parse_period(start, end, now=utcnow())
    return usage_out(usage.usage_report(session, period=period))


@router.get("/retention", response_model=RetentionOut, responses=ERROR_RESPONSES)
def retention(session: SessionDep, start: From = None, end: To = None) -> RetentionOut:
    """D1 and D7 retention of each daily cohort of new users."""
    period = usage.parse_period(start, end, now=utcnow())
    return retention_out(usage.retention(session, period=period))


def usage_out(report: usage.UsageReport) -> UsageOut:
    """Shape a usage report."""
    return UsageOut(
        start=report.period.start,
        end=report.period.end,
        total_predictions=report.total_predictions,
        users=report.users,
        active_users=ActiveUsersOut(
            daily=report.active_users["1d"],
            weekly=report.active_users["7d"],
            monthly=report.active_users["30d"],
        ),
        judged_predictions=report.judged_predictions,
        feedback_rate=report.feedback_rate,
        located_predictions=report.located_predictions,
        peak_hours=[
            HourOut(hour=hour, predictions=count) for hour, count in enumerate(report.peak_hours)
        ],
        locations=[
            LocationOut(location=place.location, predictions=place.predictions, users=place.users)
            for place in report.locations
        ],
        daily=[
            DayUsageOut(
                day=entry.day,
                predictions=entry.predictions,
                active_users=entry.active_users,
                new_users=entry.new_users,
                returning_users=entry.returning_users,
                # Every class, zeros included: a chart gets the same series every day.
                classes={name: entry.classes.get(name, 0) for name in CLASS_NAMES},
            )
            for entry in report.daily
        ],
    )


def retention_out(report: usage.RetentionReport) -> RetentionOut:
    """Shape a retention report."""
    rates = {}
    for days in (1, 7):
        retained, users, rate = report.overall(days)
        rates[days] = RetentionRateOut(retained=retained, users=users, rate=rate)
    return RetentionOut(
        start=report.period.start,
        end=report.period.end,
        d1=rates[1],
        d7=rates[7],
        cohorts=[
            CohortOut(
                day=cohort.day,
                size=cohort.size,
                d1_retained=cohort.d1,
                d1_rate=cohort.d1_rate,
                d7_retained=cohort.d7,
                d7_rate=cohort.d7_rate,
            )
            for cohort in report.cohorts
        ],
    )
