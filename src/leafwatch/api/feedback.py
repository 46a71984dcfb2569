"""Feedback: verdicts on predictions, and the figures they give."""

from datetime import timedelta
from typing import Annotated

import structlog
from fastapi import APIRouter, Query

from leafwatch.api.deps import RuntimeDep, SessionDep
from leafwatch.api.errors import ERROR_RESPONSES
from leafwatch.api.security import CLIENT_DEPENDENCIES, CLIENT_RESPONSES
from leafwatch.schemas import ClassStatsOut, FeedbackIn, FeedbackOut, FeedbackStatsOut
from leafwatch.service.feedback import submit_feedback
from leafwatch.storage import queries
from leafwatch.storage.tables import Feedback, utcnow

router = APIRouter(
    prefix="/api/v1/feedback",
    tags=["feedback"],
    dependencies=CLIENT_DEPENDENCIES,
    responses=CLIENT_RESPONSES,
)
log = structlog.stdlib.get_logger(__name__)


@router.post("/submit", response_model=FeedbackOut, status_code=201, responses=ERROR_RESPONSES)
def submit(runtime: RuntimeDep, body: FeedbackIn) -> FeedbackOut:
    """Record whether a prediction was right; every verdict is kept."""
    row, spooled = submit_feedback(runtime.recorder, body=body)
    log.info(
        "feedback recorded",
        prediction_id=str(row.prediction_id),
        is_correct=row.is_correct,
        feedback_source=row.feedback_source,
        spooled=spooled,
    )
    runtime.metrics.record_feedback(is_correct=row.is_correct, feedback_source=row.feedback_source)
    return feedback_out(row)


@router.get("/stats", response_model=FeedbackStatsOut, responses=ERROR_RESPONSES)
def stats(
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=3650, description="Window length in days.")] = 7,
) -> FeedbackStatsOut:
    """Accuracy from feedback over the predictions of the last `days` days."""
    figures = queries.feedback_stats(session, since=utcnow() - timedelta(days=days))
    return FeedbackStatsOut(
        days=days,
        since=figures.since,
        total_predictions=figures.total_predictions,
        reviewed_predictions=figures.reviewed_predictions,
        correct=figures.correct,
        accuracy=figures.accuracy,
        feedback_rate=figures.feedback_rate,
        total_feedback=figures.total_feedback,
        feedback_by_source=figures.feedback_by_source,
        per_class={
            name: ClassStatsOut(
                predicted=entry.predicted,
                reviewed=entry.reviewed,
                correct=entry.correct,
                accuracy=entry.precision,
                actual=entry.actual,
            )
            for name, entry in figures.per_class.items()
        },
    )


def feedback_out(row: Feedback) -> FeedbackOut:
    """Shape a stored verdict."""
    return FeedbackOut(
        feedback_id=row.id,
        prediction_id=row.prediction_id,
        is_correct=row.is_correct,
        correct_class_id=row.correct_class_id,
        correct_class_name=row.correct_class_name,
        feedback_source=row.feedback_source,
        user_comment=row.user_comment,
        confidence_rating=row.confidence_rating,
        timestamp=row.timestamp,
    )
