"""Request and response bodies of the HTTP API; field descriptions become the OpenAPI docs."""

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

ClassName = Literal["Healthy", "Stage1", "Stage2", "Stage3", "Stage4", "Stage5", "Stage6"]
FeedbackSource = Literal["mobile_app", "web", "expert_review"]


class ErrorOut(BaseModel):
    """Every error answer has this shape."""

    error: str = Field(description="Stable machine-readable code, e.g. `not_an_image`.")
    detail: str = Field(description="What went wrong, for a person.")


class PredictionOut(BaseModel):
    """The model's answer for one uploaded leaf image."""

    prediction_id: uuid.UUID = Field(description="Id to send feedback on this prediction.")
    predicted_class_id: int = Field(ge=0, le=6, description="0 = Healthy, 1..6 = Fouré stage.")
    predicted_class_name: ClassName = Field(description="Healthy or Stage1..Stage6.")
    confidence: float = Field(ge=0, le=1, description="Calibrated probability of that class.")
    probabilities: dict[ClassName, float] = Field(description="Probability of every class.")
    model_name: str = Field(description="Registered name of the model that answered.")
    model_version: str = Field(description="Version of the model that answered.")
    inference_time_ms: float = Field(description="Time spent in the model, milliseconds.")
    timestamp: datetime = Field(description="When the prediction was made (UTC).")


class FeedbackIn(BaseModel):
    """A verdict on a prediction, from a user or an expert."""

    model_config = ConfigDict(extra="forbid")

    prediction_id: uuid.UUID = Field(description="The prediction judged.")
    is_correct: bool = Field(description="Whether the predicted class was right.")
    correct_class_name: ClassName | None = Field(
        None, description="The right class; required when is_correct is false."
    )
    feedback_source: FeedbackSource = Field(
        description="Who judged: mobile_app, web or expert_review (which outranks the others)."
    )
    user_comment: str | None = Field(None, max_length=2000, description="Free text.")
    confidence_rating: int | None = Field(
        None, ge=1, le=5, description="How sure the judge is, 1 (guess) to 5 (certain)."
    )

    @model_validator(mode="after")
    def _class_when_wrong(self) -> Self:
        if not self.is_correct and self.correct_class_name is None:
            raise ValueError("correct_class_name is required when is_correct is false")
        return self


class FeedbackOut(BaseModel):
    """A stored verdict."""

    feedback_id: uuid.UUID
    prediction_id: uuid.UUID
    is_correct: bool
    correct_class_id: int | None
    correct_class_name: ClassName | None
    feedback_source: FeedbackSource
    user_comment: str | None
    confidence_rating: int | None
    timestamp: datetime


class ClassStatsOut(BaseModel):
    """Figures for one predicted class."""

    predicted: int = Field(description="Predictions of this class in the window.")
    reviewed: int = Field(description="Of those, how many have a verdict.")
    correct: int = Field(description="Of those, how many were right.")
    accuracy: float | None = Field(description="correct / reviewed (precision of this class).")
    actual: int = Field(description="Reviewed predictions whose true class is this one.")


class FeedbackStatsOut(BaseModel):
    """Feedback figures over the last `days` days (the rule is in the README)."""

    days: int
    since: datetime
    total_predictions: int = Field(description="Predictions made in the window.")
    reviewed_predictions: int = Field(description="Of those, how many have a verdict.")
    correct: int = Field(description="Reviewed predictions whose verdict says right.")
    accuracy: float | None = Field(description="correct / reviewed_predictions.")
    feedback_rate: float | None = Field(description="reviewed_predictions / total_predictions.")
    total_feedback: int = Field(description="Verdict rows submitted in the window.")
    feedback_by_source: dict[FeedbackSource, int]
    per_class: dict[ClassName, ClassStatsOut]


class PredictionRecordOut(PredictionOut):
    """A stored prediction with what was recorded about its image, and its verdicts."""

    user_id: str
    user_location: str | None
    image_hash: str = Field(description="SHA-256 of the uploaded bytes.")
    image_size_kb: float
    image_width: int
    image_height: int
    image_format: str | None
    feedback: list[FeedbackOut] = Field(description="Every verdict, oldest first.")


class PredictionSummaryOut(BaseModel):
    """One line of a prediction listing."""

    prediction_id: uuid.UUID
    user_id: str
    user_location: str | None
    predicted_class_name: ClassName
    confidence: float
    model_version: str
    timestamp: datetime


class PredictionPageOut(BaseModel):
    """A page of predictions, newest first."""

    items: list[PredictionSummaryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")


class HealthOut(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class ReadyOut(BaseModel):
    """Readiness, and what it depends on."""

    status: Literal["ready", "not_ready"]
    database: bool = Field(description="The database answers and its schema is current.")
    model: bool = Field(description="The production model is loaded.")
    model_version: str | None
    problems: list[str] = Field(description="Why it is not ready; empty when ready.")


class ModelInfoOut(BaseModel):
    """The serving model and its card."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    classes: list[ClassName]
    input_size: int
    embedding_dim: int | None
    onnx_sha256: str
    created_at: str | None
    metrics: dict[str, Any] = Field(description="From the model card: held-out accuracy, ECE, ...")
    data: dict[str, Any] = Field(description="From the model card: how the training data was made.")
