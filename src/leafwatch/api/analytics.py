"""Analytics: realized model quality from feedback (usage and retention live in api/usage.py)."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from leafwatch.api.deps import SessionDep
from leafwatch.api.errors import ERROR_RESPONSES
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.schemas import PlainText
from leafwatch.schemas_quality import ClassQualityOut, QualityOut, WindowQualityOut
from leafwatch.service.quality import WindowQuality, request_ranges, window_quality
from leafwatch.storage.tables import utcnow

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])


@router.get("/quality", response_model=QualityOut, responses=ERROR_RESPONSES)
def quality(
    session: SessionDep,
    start: Annotated[
        datetime | None,
        Query(
            alias="from",
            description="Start of one range [from, to) (ISO 8601; naive is UTC). "
            "Without it: the windows 1h, 24h, 7d and 30d ending at `to`.",
        ),
    ] = None,
    end: Annotated[
        datetime | None,
        Query(alias="to", description="End of the range or windows (ISO 8601); default now."),
    ] = None,
    model_version: Annotated[
        PlainText | None,
        Query(max_length=64, description="Only this model version; default every version."),
    ] = None,
) -> QualityOut:
    """Accuracy with its 95% interval, per-class precision and recall, and confusion matrices."""
    ranges = request_ranges(start=start, end=end, now=utcnow())
    figures = window_quality(session, ranges=ranges, model_version=model_version)
    first = next(iter(ranges.values()))
    return QualityOut(
        start=first[0] if start is not None else None,
        end=first[1],
        model_version=model_version,
        confidence_level=0.95,
        classes=list(CLASS_NAMES),
        windows=[window_out(entry) for entry in figures],
    )


def window_out(entry: WindowQuality) -> WindowQualityOut:
    """Shape one version's window."""
    bounds = entry.interval
    return WindowQualityOut(
        model_version=entry.model_version,
        window=entry.window,
        start=entry.start,
        end=entry.end,
        predictions=entry.predictions,
        reviewed=entry.reviewed,
        correct=entry.correct,
        accuracy=entry.accuracy,
        accuracy_low=bounds[0] if bounds else None,
        accuracy_high=bounds[1] if bounds else None,
        mean_confidence=entry.mean_confidence,
        mean_confidence_correct=entry.mean_confidence_correct,
        mean_confidence_incorrect=entry.mean_confidence_incorrect,
        per_class={
            name: ClassQualityOut(
                predictions=figures.predictions,
                reviewed=figures.reviewed,
                correct=figures.correct,
                actual=figures.actual,
                precision=figures.precision,
                recall=figures.recall,
            )
            for name, figures in entry.per_class.items()
        },
        confusion_matrix=entry.confusion,
    )
