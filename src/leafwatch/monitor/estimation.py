"""Accuracy estimated before feedback: the mean calibrated confidence of a window's predictions.

The stored `confidence` is the calibrated probability of the predicted class, the chance that the
prediction is right; its mean over a window is the window's expected accuracy (confidence-based
performance estimation). It needs no verdicts, so it moves as soon as the traffic does. It holds
only while the calibration does: under strong shift a model grows overconfident, and the gap
between the estimate and the realized accuracy is how that shows (docs/estimation.md).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from leafwatch.monitor.statistics import wilson_interval
from leafwatch.storage.queries import VersionAccuracy, effective_verdicts
from leafwatch.storage.tables import Prediction

# As ModelAccuracyDrop: fewer verdicts than this make a realized accuracy too loose to compare.
MIN_VERDICTS = 50


@dataclass(frozen=True, slots=True)
class EstimatedAccuracy:
    """One model version's predictions over one window and the accuracy their confidence implies.

    `estimated` is the mean confidence of every prediction in the window; `reviewed_estimated` is
    the same over the predictions that have a verdict, the figure to hold against the realized
    accuracy of exactly those predictions. Each is None when it averages nothing.
    """

    model_version: str
    window: str
    predictions: int
    estimated: float | None
    reviewed: int
    reviewed_estimated: float | None


def estimated_accuracy(
    session: Session, *, as_of: datetime, windows: dict[str, timedelta]
) -> list[EstimatedAccuracy]:
    """For each window ending at `as_of`, predictions and mean confidence per model version.

    A version appears, with every window, when it has a prediction in the longest window.
    Verdicts count when given by `as_of`, as in `accuracy_by_version`; one query computes all.
    """
    if not windows:
        return []
    verdicts = effective_verdicts(given_by=as_of).subquery("verdicts")
    reviewed = verdicts.c.prediction_id.is_not(None)
    columns: list[Any] = []
    for length in windows.values():
        inside = Prediction.timestamp >= as_of - length
        # CASE without ELSE is NULL outside the window, and AVG skips NULLs on every database.
        columns += [
            func.coalesce(func.sum(case((inside, 1), else_=0)), 0),
            func.avg(case((inside, Prediction.confidence))),
            func.coalesce(func.sum(case((and_(inside, reviewed), 1), else_=0)), 0),
            func.avg(case((and_(inside, reviewed), Prediction.confidence))),
        ]
    query = (
        select(Prediction.model_version, *columns)
        .select_from(Prediction)
        .outerjoin(verdicts, verdicts.c.prediction_id == Prediction.id)
        .where(Prediction.timestamp >= as_of - max(windows.values()), Prediction.timestamp < as_of)
        .group_by(Prediction.model_version)
        .order_by(Prediction.model_version)
    )
    figures = []
    for row in session.execute(query):
        for index, name in enumerate(windows):
            count, mean, judged, judged_mean = row[1 + 4 * index : 5 + 4 * index]
            figures.append(
                EstimatedAccuracy(
                    model_version=row[0],
                    window=name,
                    predictions=int(count),
                    estimated=None if mean is None else float(mean),
                    reviewed=int(judged),
                    reviewed_estimated=None if judged_mean is None else float(judged_mean),
                )
            )
    return figures


@dataclass(frozen=True, slots=True)
class EstimationGap:
    """Estimated against realized accuracy on the same reviewed predictions of a version."""

    model_version: str
    window: str
    estimated: float
    realized: float
    reviewed: int
    realized_low: float
    realized_high: float

    @property
    def gap(self) -> float:
        """Estimated minus realized: positive when the model is more confident than right."""
        return self.estimated - self.realized

    @property
    def outside_interval(self) -> bool:
        """Whether the estimate lies outside the realized accuracy's 95% interval."""
        return not self.realized_low <= self.estimated <= self.realized_high


def estimation_gaps(
    estimates: Iterable[EstimatedAccuracy],
    realized: Iterable[VersionAccuracy],
    *,
    min_verdicts: int = MIN_VERDICTS,
) -> list[EstimationGap]:
    """The gap per version and window where both figures exist and `min_verdicts` back the realized.

    The estimate compared is the mean confidence of the reviewed predictions only: feedback is no
    random sample (farmers report doubtful answers more), and comparing like with like keeps that
    choice out of the gap. Pass the same `as_of` to both queries so the reviewed sets agree.
    """
    by_key = {
        (figure.model_version, figure.window): figure
        for figure in realized
        if figure.predicted_class is None
    }
    gaps = []
    for estimate in estimates:
        figure = by_key.get((estimate.model_version, estimate.window))
        if figure is None or estimate.reviewed_estimated is None:
            continue
        if figure.reviewed < max(min_verdicts, 1):
            continue
        low, high = wilson_interval(figure.correct, figure.reviewed) or (0.0, 1.0)
        gaps.append(
            EstimationGap(
                model_version=estimate.model_version,
                window=estimate.window,
                estimated=estimate.reviewed_estimated,
                realized=figure.correct / figure.reviewed,
                reviewed=figure.reviewed,
                realized_low=low,
                realized_high=high,
            )
        )
    return gaps
