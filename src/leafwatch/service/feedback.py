"""Accepting a verdict on a prediction, with the database or, while it is away, the spool."""

import uuid

from leafwatch.errors import InvalidFeedback
from leafwatch.model.labels import class_id
from leafwatch.schemas import FeedbackIn
from leafwatch.service.recorder import PredictionRef, Recorder
from leafwatch.storage.tables import Feedback, utcnow


def submit_feedback(recorder: Recorder, *, body: FeedbackIn) -> tuple[Feedback, bool]:
    """Store a verdict, True when spooled; raises PredictionNotFound, or InvalidFeedback.

    While the database is away, a verdict on a spooled prediction is checked against it; one on
    a prediction the spool does not hold cannot be checked, so it is kept and checked at replay.
    """

    def verdict_for(found: PredictionRef) -> Feedback:
        correct_name = verdict_class(
            found.predicted_class,
            is_correct=body.is_correct,
            correct_class_name=body.correct_class_name,
        )
        return Feedback(
            id=uuid.uuid4(),
            prediction_id=body.prediction_id,
            is_correct=body.is_correct,
            correct_class_id=class_id(correct_name) if correct_name is not None else None,
            correct_class_name=correct_name,
            user_comment=body.user_comment,
            confidence_rating=body.confidence_rating,
            feedback_source=body.feedback_source,
            timestamp=utcnow(),
        )

    return recorder.save_feedback(body.prediction_id, verdict_for)


def verdict_class(
    predicted: str | None, *, is_correct: bool, correct_class_name: str | None
) -> str | None:
    """The true class a verdict names (None only while the predicted class is unknown).

    Raises InvalidFeedback when the verdict contradicts the predicted class.
    """
    if predicted is None:
        return correct_class_name
    if is_correct:
        if correct_class_name not in (None, predicted):
            raise InvalidFeedback(
                f"is_correct is true but correct_class_name {correct_class_name!r} "
                f"differs from the predicted class {predicted!r}"
            )
        return predicted
    if correct_class_name == predicted:
        raise InvalidFeedback(
            f"is_correct is false but correct_class_name is the predicted class {predicted!r}"
        )
    assert correct_class_name is not None  # the schema requires it when is_correct is false
    return correct_class_name
