"""Response bodies of the usage analytics endpoints; field descriptions become the OpenAPI docs."""

from datetime import date, datetime

from pydantic import BaseModel, Field

from leafwatch.schemas import ClassName


class ActiveUsersOut(BaseModel):
    """Distinct users with at least one prediction in windows ending at the period's end."""

    daily: int = Field(description="Users active in the last day (DAU).")
    weekly: int = Field(description="Users active in the last 7 days (WAU).")
    monthly: int = Field(description="Users active in the last 30 days (MAU).")


class HourOut(BaseModel):
    """Predictions made in one UTC hour of the day, over the whole period."""

    hour: int = Field(ge=0, le=23, description="Hour of the day, UTC, 0-23.")
    predictions: int = Field(description="Predictions made in that hour on any day of the period.")


class LocationOut(BaseModel):
    """Predictions from one `user_location`."""

    location: str = Field(description="The location as the app sent it.")
    predictions: int = Field(description="Predictions made there in the period.")
    users: int = Field(description="Distinct users who sent predictions from there.")


class DayUsageOut(BaseModel):
    """One UTC day of the period (whole days, from the first day's midnight)."""

    day: date = Field(description="The UTC day.")
    predictions: int = Field(description="Predictions made that day.")
    active_users: int = Field(description="Distinct users with a prediction that day.")
    new_users: int = Field(description="Active users whose first prediction ever was that day.")
    returning_users: int = Field(description="Active users whose first prediction was earlier.")
    classes: dict[ClassName, int] = Field(description="Predictions that day per predicted class.")


class UsageOut(BaseModel):
    """Who used LeafWatch in a period, when and how much."""

    start: datetime = Field(description="Start of the period, UTC, included.")
    end: datetime = Field(description="End of the period, UTC, excluded.")
    total_predictions: int = Field(description="Predictions made in the period.")
    users: int = Field(description="Distinct users with a prediction in the period.")
    active_users: ActiveUsersOut = Field(description="DAU, WAU and MAU as of the period's end.")
    judged_predictions: int = Field(
        description="Predictions of the period with at least one verdict given by its end."
    )
    feedback_rate: float | None = Field(
        description="judged_predictions / total_predictions; null without predictions."
    )
    located_predictions: int = Field(description="Predictions that carried a user_location.")
    peak_hours: list[HourOut] = Field(description="Predictions per UTC hour of day, 0 to 23.")
    locations: list[LocationOut] = Field(description="Top locations by predictions, at most 10.")
    daily: list[DayUsageOut] = Field(description="One entry per UTC day the period touches.")


class CohortOut(BaseModel):
    """Users whose first prediction was on one UTC day, and how many came back."""

    day: date = Field(description="The cohort's day: its users' first prediction was that day.")
    size: int = Field(description="Users in the cohort.")
    d1_retained: int | None = Field(
        description="Cohort users with a prediction on the next day; null until that day ends."
    )
    d1_rate: float | None = Field(description="d1_retained / size; null when either is unknown.")
    d7_retained: int | None = Field(
        description="Cohort users with a prediction on any of the 7 days after; "
        "null until the 7th day ends."
    )
    d7_rate: float | None = Field(description="d7_retained / size; null when either is unknown.")


class RetentionRateOut(BaseModel):
    """Retention over every cohort whose window has ended."""

    retained: int = Field(description="Users retained, summed over the measured cohorts.")
    users: int = Field(description="Users in the measured cohorts.")
    rate: float | None = Field(description="retained / users; null when no cohort is measured.")


class RetentionOut(BaseModel):
    """D1 and D7 retention of the daily cohorts of new users in a period."""

    start: datetime = Field(description="Start of the period, UTC, included.")
    end: datetime = Field(
        description="End of the period, UTC, excluded; later predictions do not count."
    )
    d1: RetentionRateOut = Field(description="Day-1 retention over the cohorts that show it.")
    d7: RetentionRateOut = Field(description="Day-7 retention over the cohorts that show it.")
    cohorts: list[CohortOut] = Field(description="One cohort per UTC day the period touches.")
