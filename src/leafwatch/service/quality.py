"""Realized model quality from feedback: accuracy and its interval, classes, daily rows."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.orm import Session

from leafwatch.errors import InvalidPeriod
from leafwatch.model.labels import CLASS_NAMES, NUM_CLASSES
from leafwatch.monitor.statistics import wilson_interval
from leafwatch.storage import quality as store
from leafwatch.storage import rollups
from leafwatch.storage.queries import accuracy_by_version
from leafwatch.storage.tables import utcnow

QUALITY_WINDOWS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
RANGE_WINDOW = "range"  # the one window of a request that gives `from`


@dataclass
class ClassQuality:
    """One class's figures in a window: precision by predicted class, recall by true class."""

    predictions: int = 0
    reviewed: int = 0
    correct: int = 0
    actual: int = 0
    found: int = 0

    @property
    def precision(self) -> float | None:
        """Share of reviewed predictions of this class that were right."""
        return self.correct / self.reviewed if self.reviewed else None

    @property
    def recall(self) -> float | None:
        """Share of reviewed leaves truly of this class that the model called so."""
        return self.found / self.actual if self.actual else None


@dataclass
class WindowQuality:
    """Realized quality of one model version over one window [start, end)."""

    model_version: str
    window: str
    start: datetime
    end: datetime
    predictions: int = 0
    reviewed: int = 0
    correct: int = 0
    confidence_sum: float = 0.0
    confidence_sum_correct: float = 0.0
    confidence_sum_incorrect: float = 0.0
    per_class: dict[str, ClassQuality] = field(
        default_factory=lambda: {name: ClassQuality() for name in CLASS_NAMES}
    )
    # confusion[true][predicted], indexed like CLASS_NAMES.
    confusion: list[list[int]] = field(
        default_factory=lambda: [[0] * NUM_CLASSES for _ in range(NUM_CLASSES)]
    )

    @property
    def accuracy(self) -> float | None:
        """Share of reviewed predictions that were right; None with no verdicts."""
        return self.correct / self.reviewed if self.reviewed else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% Wilson interval of the accuracy; None with no verdicts."""
        return wilson_interval(self.correct, self.reviewed)

    @property
    def mean_confidence(self) -> float | None:
        """Mean confidence of every prediction in the window."""
        return self.confidence_sum / self.predictions if self.predictions else None

    @property
    def mean_confidence_correct(self) -> float | None:
        """Mean confidence of the predictions judged right."""
        return self.confidence_sum_correct / self.correct if self.correct else None

    @property
    def mean_confidence_incorrect(self) -> float | None:
        """Mean confidence of the predictions judged wrong."""
        wrong = self.reviewed - self.correct
        return self.confidence_sum_incorrect / wrong if wrong else None


def rolling_ranges(
    as_of: datetime, windows: Mapping[str, timedelta]
) -> dict[str, tuple[datetime, datetime]]:
    """Each window as the range that ends at `as_of`."""
    return {name: (as_of - length, as_of) for name, length in windows.items()}


def request_ranges(
    *, start: datetime | None, end: datetime | None, now: datetime
) -> dict[str, tuple[datetime, datetime]]:
    """The ranges of a request: [start, end) alone, or every window ending at `end` (default now).

    Naive times are taken as UTC; raises InvalidPeriod when start is not before end.
    """
    end = as_utc(end) if end is not None else now
    if start is None:
        return rolling_ranges(end, QUALITY_WINDOWS)
    start = as_utc(start)
    if start >= end:
        raise InvalidPeriod(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    return {RANGE_WINDOW: (start, end)}


def as_utc(moment: datetime) -> datetime:
    """An aware UTC time; a naive one is read as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def summarize(
    ranges: Mapping[str, tuple[datetime, datetime]], cells: Iterable[store.QualityCell]
) -> list[WindowQuality]:
    """Sum the cells into every window of every version that has a prediction in any."""
    figures: dict[tuple[str, str], WindowQuality] = {}
    for cell in cells:
        if (cell.model_version, cell.window) not in figures:
            for name, (start, end) in ranges.items():
                figures[cell.model_version, name] = WindowQuality(
                    cell.model_version, name, start, end
                )
        entry = figures[cell.model_version, cell.window]
        by_class = entry.per_class[CLASS_NAMES[cell.predicted_class_id]]
        entry.predictions += cell.count
        entry.confidence_sum += cell.confidence_sum
        by_class.predictions += cell.count
        if cell.is_correct is None:
            continue
        entry.reviewed += cell.count
        by_class.reviewed += cell.count
        if cell.is_correct:
            entry.correct += cell.count
            entry.confidence_sum_correct += cell.confidence_sum
            by_class.correct += cell.count
        else:
            entry.confidence_sum_incorrect += cell.confidence_sum
        if cell.true_class_id is not None:
            entry.confusion[cell.true_class_id][cell.predicted_class_id] += cell.count
            truth = entry.per_class[CLASS_NAMES[cell.true_class_id]]
            truth.actual += cell.count
            if cell.true_class_id == cell.predicted_class_id:
                truth.found += cell.count
    order = {name: index for index, name in enumerate(ranges)}
    return sorted(figures.values(), key=lambda entry: (entry.model_version, order[entry.window]))


def window_quality(
    session: Session,
    *,
    ranges: Mapping[str, tuple[datetime, datetime]],
    model_version: str | None = None,
    live: bool = False,
) -> list[WindowQuality]:
    """Realized quality per model version and range, every verdict known so far counting.

    Whole UTC days held by the rollups are read from them (their verdicts as of the last
    rollup); the rest of each range is read live. `live=True` reads everything live.
    """
    if not ranges:
        raise ValueError("window_quality needs at least one range")
    if live:
        return summarize(
            ranges, store.quality_cells(session, ranges=ranges, model_version=model_version)
        )
    held = rollups.rolled_days(
        session,
        start=min(start for start, _ in ranges.values()),
        end=max(end for _, end in ranges.values()),
    )
    covered = {name: held.whole(start, end) for name, (start, end) in ranges.items()}
    pieces, owner = {}, {}
    for name, (start, end) in ranges.items():
        for index, piece in enumerate(rollups.gaps(start, end, covered[name])):
            pieces[f"{name}/{index}"] = piece
            owner[f"{name}/{index}"] = name
    cells = store.rolled_cells(session, days=covered, model_version=model_version)
    if pieces:
        rest = store.quality_cells(
            session,
            ranges=pieces,
            model_version=model_version,
            within=rollups.merge(pieces.values()),
        )
        cells += [replace(cell, window=owner[cell.window]) for cell in rest]
    return summarize(ranges, cells)


@dataclass(frozen=True, slots=True)
class AccuracyInterval:
    """Accuracy of one model version over one window, with its 95% Wilson interval."""

    model_version: str
    window: str
    reviewed: int
    correct: int
    accuracy: float | None
    wilson_low: float | None
    wilson_high: float | None


def accuracy_intervals(
    session: Session, *, as_of: datetime, windows: Mapping[str, timedelta]
) -> list[AccuracyInterval]:
    """Per (model version, window ending at `as_of`): reviewed, correct, accuracy and interval.

    Same counts as `model_accuracy` (verdicts given by `as_of`); the alert reads the bounds.
    """
    figures = []
    for entry in accuracy_by_version(session, as_of=as_of, windows=dict(windows)):
        bounds = wilson_interval(entry.correct, entry.reviewed)
        figures.append(
            AccuracyInterval(
                model_version=entry.model_version,
                window=entry.window,
                reviewed=entry.reviewed,
                correct=entry.correct,
                accuracy=entry.correct / entry.reviewed if entry.reviewed else None,
                wilson_low=bounds[0] if bounds else None,
                wilson_high=bounds[1] if bounds else None,
            )
        )
    return figures


def day_range(day: date) -> tuple[datetime, datetime]:
    """The UTC day as [midnight, next midnight)."""
    start = datetime.combine(day, time(), UTC)
    return start, start + timedelta(days=1)


def record_daily_performance(session: Session, *, day: date) -> int:
    """Compute and store the day's `model_performance` rows (one per version); returns how many.

    Idempotent: a rerun replaces the rows, with the verdicts that have arrived since. A day
    without predictions writes nothing.
    """
    # Live: this job is what picks up late verdicts, it must not read the rollups.
    figures = window_quality(session, ranges={"day": day_range(day)}, live=True)
    computed_at = utcnow()
    rows = [daily_row(entry, day=day, computed_at=computed_at) for entry in figures]
    store.upsert_daily(session, day=day, rows=rows)
    session.commit()
    return len(rows)


def daily_row(entry: WindowQuality, *, day: date, computed_at: datetime) -> dict[str, Any]:
    """The `model_performance` columns of one version's day."""
    bounds = entry.interval
    return {
        "model_version": entry.model_version,
        "day": day,
        "predictions": entry.predictions,
        "reviewed": entry.reviewed,
        "correct": entry.correct,
        "accuracy": entry.accuracy,
        "wilson_low": bounds[0] if bounds else None,
        "wilson_high": bounds[1] if bounds else None,
        "mean_confidence": entry.mean_confidence,
        "mean_confidence_correct": entry.mean_confidence_correct,
        "mean_confidence_incorrect": entry.mean_confidence_incorrect,
        "per_class": {name: class_figures(figures) for name, figures in entry.per_class.items()},
        "confusion": {"classes": list(CLASS_NAMES), "matrix": entry.confusion},
        "computed_at": computed_at,
    }


def class_figures(figures: ClassQuality) -> dict[str, Any]:
    """One class's figures as plain JSON values."""
    return {
        "predictions": figures.predictions,
        "reviewed": figures.reviewed,
        "correct": figures.correct,
        "actual": figures.actual,
        "precision": figures.precision,
        "recall": figures.recall,
    }
