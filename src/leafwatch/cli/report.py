"""`leafwatch report`: usage, retention and model quality of a period, as tables in the terminal."""

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from leafwatch.config import Settings
from leafwatch.errors import InvalidPeriod
from leafwatch.model.labels import CLASS_NAMES

if TYPE_CHECKING:
    from leafwatch.service.quality import WindowQuality
    from leafwatch.storage.usage import RetentionReport, UsageReport

console = Console()


def report(
    start: Annotated[
        str | None,
        typer.Option(
            "--from", help="Start, UTC: ISO date or datetime; default 30 days before --to."
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--to", help="End, UTC: ISO date (whole day included) or datetime; default now."
        ),
    ] = None,
) -> None:
    """Print usage, retention and model quality of a period (the analytics endpoints' figures)."""
    from leafwatch.cli.database import database_session
    from leafwatch.service.quality import window_quality
    from leafwatch.storage import usage
    from leafwatch.storage.tables import utcnow

    try:
        period = usage.parse_period(start, end, now=utcnow())
    except InvalidPeriod as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(2) from None
    with database_session(Settings()) as session:
        figures = usage.usage_report(session, period=period)
        cohorts = usage.retention(session, period=period)
        quality = window_quality(session, ranges={"period": (period.start, period.end)})
    console.print(
        f"LeafWatch from [bold]{period.start:%Y-%m-%d %H:%M}[/bold] "
        f"to [bold]{period.end:%Y-%m-%d %H:%M}[/bold] UTC"
    )
    for table in (
        _usage_table(figures),
        _daily_table(figures),
        _classes_table(figures),
        _hours_table(figures),
        _locations_table(figures),
        _retention_table(cohorts),
        _quality_table(quality),
    ):
        console.print(table)


def _usage_table(figures: "UsageReport") -> Table:
    table = Table(title="usage")
    table.add_column("figure")
    table.add_column("value", justify="right")
    active = figures.active_users
    rows = {
        "predictions": str(figures.total_predictions),
        "users": str(figures.users),
        "active users, last day (DAU)": str(active["1d"]),
        "active users, last 7 days (WAU)": str(active["7d"]),
        "active users, last 30 days (MAU)": str(active["30d"]),
        "predictions with feedback": str(figures.judged_predictions),
        "feedback rate": _share(figures.feedback_rate),
        "predictions with a location": str(figures.located_predictions),
    }
    for name, value in rows.items():
        table.add_row(name, value)
    return table


def _daily_table(figures: "UsageReport") -> Table:
    table = Table(title="per day (UTC)")
    for column in ("day", "predictions", "active users", "new", "returning"):
        table.add_column(column, justify="left" if column == "day" else "right")
    for entry in figures.daily:
        table.add_row(
            entry.day.isoformat(),
            str(entry.predictions),
            str(entry.active_users),
            str(entry.new_users),
            str(entry.returning_users),
        )
    return table


def _classes_table(figures: "UsageReport") -> Table:
    table = Table(title="predicted classes per day")
    table.add_column("day")
    for name in CLASS_NAMES:
        table.add_column(name, justify="right")
    for entry in figures.daily:
        table.add_row(entry.day.isoformat(), *(str(entry.classes.get(n, 0)) for n in CLASS_NAMES))
    return table


def _hours_table(figures: "UsageReport") -> Table:
    table = Table(title="predictions by hour of day (UTC)")
    table.add_column("hour", justify="right")
    table.add_column("predictions", justify="right")
    table.add_column("")
    peak = max(figures.peak_hours) or 1
    for hour, count in enumerate(figures.peak_hours):
        table.add_row(f"{hour:02d}", str(count), "#" * round(30 * count / peak))
    return table


def _locations_table(figures: "UsageReport") -> Table:
    table = Table(title="top locations")
    for column in ("location", "predictions", "users"):
        table.add_column(column, justify="left" if column == "location" else "right")
    for place in figures.locations:
        table.add_row(place.location, str(place.predictions), str(place.users))
    return table


def _retention_table(cohorts: "RetentionReport") -> Table:
    d1, d7 = cohorts.overall(1), cohorts.overall(7)
    table = Table(
        title="retention of daily cohorts of new users (- = its days have not all ended)",
        caption=f"D1 {_share(d1[2])} of {d1[1]} users, D7 {_share(d7[2])} of {d7[1]} users",
    )
    for column in ("cohort day", "users", "D1", "D1 rate", "D7", "D7 rate"):
        table.add_column(column, justify="left" if column == "cohort day" else "right")
    for cohort in cohorts.cohorts:
        table.add_row(
            cohort.day.isoformat(),
            str(cohort.size),
            "-" if cohort.d1 is None else str(cohort.d1),
            _share(cohort.d1_rate),
            "-" if cohort.d7 is None else str(cohort.d7),
            _share(cohort.d7_rate),
        )
    return table


def _quality_table(windows: "list[WindowQuality]") -> Table:
    table = Table(title="model quality from feedback (95% Wilson interval)")
    columns = ("model version", "predictions", "reviewed", "accuracy", "95% interval")
    for column in (*columns, "confidence right", "confidence wrong"):
        table.add_column(column, justify="left" if column == "model version" else "right")
    for entry in windows:
        bounds = entry.interval
        table.add_row(
            entry.model_version,
            str(entry.predictions),
            str(entry.reviewed),
            _share(entry.accuracy),
            "-" if bounds is None else f"{bounds[0]:.1%} to {bounds[1]:.1%}",
            _number(entry.mean_confidence_correct),
            _number(entry.mean_confidence_incorrect),
        )
    return table


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
