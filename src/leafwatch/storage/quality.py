"""Realized-quality counts from feedback, aggregated in SQL per model version and time range."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, delete, false, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from leafwatch.storage.queries import effective_verdicts
from leafwatch.storage.tables import ModelPerformance, Prediction, QualityDayCell

# Named time ranges [start, end), in UTC; they may overlap (rolling windows do).
Ranges = Mapping[str, tuple[datetime, datetime]]


@dataclass(frozen=True, slots=True)
class QualityCell:
    """Predictions of one version in one range that share a predicted class and a verdict."""

    model_version: str
    window: str
    predicted_class_id: int
    is_correct: bool | None  # None: no verdict
    true_class_id: int | None  # None: no verdict, or a wrong one that names no class
    count: int
    confidence_sum: float


def quality_cells(
    session: Session,
    *,
    ranges: Ranges,
    model_version: str | None = None,
    given_by: datetime | None = None,
    within: Sequence[tuple[datetime, datetime]] | None = None,
) -> list[QualityCell]:
    """Per version and range, predictions by (predicted class, verdict, true class); one query.

    Each prediction is judged by its effective verdict (given by `given_by` when set). The true
    class is the predicted one when the verdict says correct, else the verdict's correct class.
    With `within`, only predictions in those ranges count (the rest come from the rollups).
    Only non-empty cells are returned; every figure of the realized quality is a sum of cells.
    """
    # The ranges' boundaries cut time into segments; the query groups by segment (one CASE per
    # row instead of one per row and range), and each range adds up the segments it covers.
    bounds = sorted({moment for pair in ranges.values() for moment in pair})
    inner = [(Prediction.timestamp < bound, index) for index, bound in enumerate(bounds[1:-1])]
    segment = case(*inner, else_=len(bounds) - 2) if inner else literal(0)
    # `within` lies inside the ranges: alone, it lets the index read just those pieces.
    scanned = [(bounds[0], bounds[-1])] if within is None else within
    conditions = [
        or_(
            false(),
            *(and_(Prediction.timestamp >= a, Prediction.timestamp < b) for a, b in scanned),
        )
    ]
    if model_version is not None:
        conditions.append(Prediction.model_version == model_version)
    verdicts = _verdicts(given_by=given_by, among=conditions)
    groups = (*_cell_groups(verdicts), segment)
    query = (
        select(*groups, func.count(), func.sum(Prediction.confidence))
        .select_from(Prediction)
        .outerjoin(verdicts, verdicts.c.prediction_id == Prediction.id)
        .where(*conditions)
        .group_by(*groups)
    )
    covers = {
        name: {index for index in range(len(bounds) - 1) if start <= bounds[index] < end}
        for name, (start, end) in ranges.items()
    }
    sums: dict[tuple[str, int, bool | None, int | None, str], list[float]] = {}
    for version, predicted, right, truth, index, count, confidence in session.execute(query):
        key_base = _key(version, predicted, right, truth)
        for name, indexes in covers.items():
            if int(index) in indexes:
                total = sums.setdefault((*key_base, name), [0, 0.0])
                total[0] += int(count)
                total[1] += float(confidence)
    return [
        QualityCell(version, name, predicted, right, truth, int(count), confidence)
        for (version, predicted, right, truth, name), (count, confidence) in sums.items()
    ]


def _key(
    version: Any, predicted: Any, right: Any, truth: Any
) -> tuple[str, int, bool | None, int | None]:
    return (
        str(version),
        int(predicted),
        None if right is None else bool(right),
        None if truth is None else int(truth),
    )


def _verdicts(*, given_by: datetime | None, among: Sequence[ColumnElement[bool]]) -> Any:
    """The effective verdicts on the predictions that satisfy `among`, as a subquery.

    Ranking only their verdicts (a prediction's verdicts are all kept or all left out, so the
    rank is the same) spares ranking every verdict ever given for a day's worth of predictions.
    """
    ids = select(Prediction.id).where(*among)
    return effective_verdicts(given_by=given_by, prediction_ids=ids).subquery("verdicts")


def _cell_groups(verdicts: Any) -> tuple[Any, Any, Any, Any]:
    """What a cell is keyed by: version, predicted class, the verdict and the true class."""
    true_class = case(
        (verdicts.c.is_correct, Prediction.predicted_class_id),
        else_=verdicts.c.correct_class_id,
    )
    return (
        Prediction.model_version,
        Prediction.predicted_class_id,
        verdicts.c.is_correct,
        true_class,
    )


def day_cells(*, ranges: Sequence[tuple[datetime, datetime]], day: ColumnElement[Any]) -> Any:
    """The cells per UTC day of the predictions in these ranges, for the rollup to store."""
    rows = or_(
        false(), *(and_(Prediction.timestamp >= a, Prediction.timestamp < b) for a, b in ranges)
    )
    verdicts = _verdicts(given_by=None, among=[rows])
    groups = (day, *_cell_groups(verdicts))
    return (
        select(*groups, func.count(), func.sum(Prediction.confidence))
        .select_from(Prediction)
        .outerjoin(verdicts, verdicts.c.prediction_id == Prediction.id)
        .where(rows)
        .group_by(*groups)
    )


def rolled_cells(
    session: Session,
    *,
    days: Mapping[str, Iterable[date]],
    model_version: str | None = None,
) -> list[QualityCell]:
    """Per named set of rolled-up days, the sum of their stored cells."""
    wanted = {name: set(chosen) for name, chosen in days.items()}
    every = set().union(*wanted.values())
    if not every:
        return []
    query = select(
        QualityDayCell.day,
        QualityDayCell.model_version,
        QualityDayCell.predicted_class_id,
        QualityDayCell.is_correct,
        QualityDayCell.true_class_id,
        QualityDayCell.predictions,
        QualityDayCell.confidence_sum,
    ).where(QualityDayCell.day >= min(every), QualityDayCell.day <= max(every))
    if model_version is not None:
        query = query.where(QualityDayCell.model_version == model_version)
    sums: dict[tuple[str, int, bool | None, int | None, str], list[float]] = {}
    for day, version, predicted, right, truth, count, confidence in session.execute(query):
        key_base = _key(version, predicted, right, truth)
        for name, chosen in wanted.items():
            if day in chosen:
                total = sums.setdefault((*key_base, name), [0, 0.0])
                total[0] += int(count)
                total[1] += float(confidence)
    return [
        QualityCell(version, name, predicted, right, truth, int(count), confidence)
        for (version, predicted, right, truth, name), (count, confidence) in sums.items()
    ]


def upsert_daily(session: Session, *, day: date, rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace the day's `model_performance` rows with these (one per version); no commit."""
    versions = [row["model_version"] for row in rows]
    # A version with no predictions left that day (rows deleted since) loses its stale row.
    session.execute(
        delete(ModelPerformance).where(
            ModelPerformance.day == day, ModelPerformance.model_version.not_in(versions)
        )
    )
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ModelPerformance).values([dict(row) for row in rows])
    # ON CONFLICT keeps concurrent runs (two workers, a manual run) from failing on the key.
    replaced = {
        column: statement.excluded[column]
        for column in rows[0]
        if column not in ("model_version", "day")
    }
    session.execute(
        statement.on_conflict_do_update(index_elements=["model_version", "day"], set_=replaced)
    )


def daily_rows(
    session: Session, *, first_day: date, last_day: date, model_version: str | None = None
) -> list[ModelPerformance]:
    """The stored daily rows from `first_day` to `last_day` inclusive, by day then version."""
    query = select(ModelPerformance).where(
        ModelPerformance.day >= first_day, ModelPerformance.day <= last_day
    )
    if model_version is not None:
        query = query.where(ModelPerformance.model_version == model_version)
    return list(
        session.scalars(query.order_by(ModelPerformance.day, ModelPerformance.model_version))
    )
