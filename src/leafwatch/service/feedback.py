"""Accepting a verdict on a prediction."""

import uuid

from sqlalchemy.orm import Session

from leafwatch.errors import InvalidFeedback
from leafwatch.model.labels import class_id
from leafwatch.schemas import FeedbackIn
from leafwatch.storage import queries
from leafwatch.storage.tables import Feedback, utcnow


def submit_feedback(session: Session, *, body: FeedbackIn) -> Feedback:
    """Store a verdict; raises PredictionNotFound, or InvalidFeedback when it contradicts itself."""
    prediction = queries.get_prediction(session, prediction_id=body.prediction_id)
    predicted = prediction.predicted_class_name
    correct_name: str | None
    if body.is_correct:
        if body.correct_class_name not in (None, predicted):
            raise InvalidFeedback(
                f"is_correct is true but correct_class_name {body.correct_class_name!r} "
                f"differs from the predicted class {predicted!r}"
            )
        correct_name = predicted
    else:
        correct_name = body.correct_class_name
        if correct_name == predicted:
            raise InvalidFeedback(
                f"is_correct is false but correct_class_name is the predicted class {predicted!r}"
            )
    assert correct_name is not None  # the schema requires it when is_correct is false
    row = Feedback(
        id=uuid.uuid4(),
        prediction_id=prediction.id,
        is_correct=body.is_correct,
        correct_class_id=class_id(correct_name),
        correct_class_name=correct_name,
        user_comment=body.user_comment,
        confidence_rating=body.confidence_rating,
        feedback_source=body.feedback_source,
        timestamp=utcnow(),
    )
    queries.add(session, row=row)
    return row
