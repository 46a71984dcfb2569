"""Reading stored predictions back."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from leafwatch.api.deps import SessionDep
from leafwatch.api.errors import ERROR_RESPONSES
from leafwatch.api.feedback import feedback_out
from leafwatch.api.predict import prediction_out
from leafwatch.api.security import CLIENT_DEPENDENCIES, CLIENT_RESPONSES
from leafwatch.schemas import (
    PlainText,
    PredictionPageOut,
    PredictionRecordOut,
    PredictionSummaryOut,
)
from leafwatch.storage import queries

# Predictions name their users and places: behind the same keys as predict and feedback.
router = APIRouter(
    prefix="/api/v1/predictions",
    tags=["predictions"],
    dependencies=CLIENT_DEPENDENCIES,
    responses=CLIENT_RESPONSES,
)


@router.get("/{prediction_id}", response_model=PredictionRecordOut, responses=ERROR_RESPONSES)
def get_prediction(session: SessionDep, prediction_id: uuid.UUID) -> PredictionRecordOut:
    """One prediction with its image facts and every verdict on it."""
    row = queries.get_prediction(session, prediction_id=prediction_id)
    verdicts = queries.feedback_for(session, prediction_id=prediction_id)
    return PredictionRecordOut(
        **prediction_out(row).model_dump(),
        user_id=row.user_id,
        user_location=row.user_location,
        image_hash=row.image_hash,
        image_size_kb=row.image_size_kb,
        image_width=row.image_width,
        image_height=row.image_height,
        image_format=row.meta.get("image_format"),
        feedback=[feedback_out(verdict) for verdict in verdicts],
    )


@router.get("", response_model=PredictionPageOut, responses=ERROR_RESPONSES)
def list_predictions(
    session: SessionDep,
    user_id: Annotated[
        PlainText | None, Query(max_length=128, description="Only this user's.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    cursor: Annotated[
        str | None,
        Query(min_length=1, max_length=512, description="`next_cursor` of the previous page."),
    ] = None,
) -> PredictionPageOut:
    """Predictions, newest first, a page at a time."""
    rows, next_cursor = queries.list_predictions(
        session, user_id=user_id, limit=limit, cursor=cursor
    )
    return PredictionPageOut(
        items=[
            PredictionSummaryOut(
                prediction_id=row.id,
                user_id=row.user_id,
                user_location=row.user_location,
                predicted_class_name=row.predicted_class_name,
                confidence=row.confidence,
                model_version=row.model_version,
                timestamp=row.timestamp,
            )
            for row in rows
        ],
        next_cursor=next_cursor,
    )
