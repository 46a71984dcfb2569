"""Request and response bodies of the HTTP API; field descriptions become the OpenAPI docs."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

_CONTROL = frozenset(chr(code) for code in (*range(32), 127))
_LINE_BREAKS = frozenset("\t\n\r")


def _storable(value: str) -> str:
    # JSON can carry lone surrogates ("\ud800"), which no database can store as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it has a lone surrogate)") from None
    return value


def _no_control_characters(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and no id or place name needs a control character.
    if any(char in _CONTROL for char in value):
        raise ValueError("must not contain control characters")
    return _storable(value)


def _no_control_characters_but_line_breaks(value: str) -> str:
    if any(char in _CONTROL and char not in _LINE_BREAKS for char in value):
        raise ValueError("must not contain control characters other than tabs and line breaks")
    return _storable(value)


PlainText = Annotated[str, AfterValidator(_no_control_characters)]
MultilineText = Annotated[str, AfterValidator(_no_control_characters_but_line_breaks)]

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
    user_comment: MultilineText | None = Field(None, max_length=2000, description="Free text.")
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

    feedback_id: uuid.UUID = Field(description="Id of this verdict.")
    prediction_id: uuid.UUID = Field(description="The prediction judged.")
    is_correct: bool = Field(description="Whether the predicted class was right.")
    correct_class_id: int | None = Field(description="Id of the true class.")
    correct_class_name: ClassName | None = Field(
        description="The true class; the predicted one when the verdict says right (null while "
        "that is unknown: accepted during a database outage, see docs/reliability.md)."
    )
    feedback_source: FeedbackSource = Field(description="Who judged.")
    user_comment: str | None = Field(description="Free text from the judge.")
    confidence_rating: int | None = Field(description="How sure the judge was, 1 to 5.")
    timestamp: datetime = Field(description="When the verdict was received (UTC).")


class ClassStatsOut(BaseModel):
    """Figures for one predicted class."""

    predicted: int = Field(description="Predictions of this class in the window.")
    reviewed: int = Field(description="Of those, how many have a verdict.")
    correct: int = Field(description="Of those, how many were right.")
    accuracy: float | None = Field(description="correct / reviewed (precision of this class).")
    actual: int = Field(description="Reviewed predictions whose true class is this one.")


class FeedbackStatsOut(BaseModel):
    """Feedback figures over the last `days` days (the rule is in the README)."""

    days: int = Field(description="Window length in days.")
    since: datetime = Field(description="Start of the window (UTC).")
    total_predictions: int = Field(description="Predictions made in the window.")
    reviewed_predictions: int = Field(description="Of those, how many have a verdict.")
    correct: int = Field(description="Reviewed predictions whose verdict says right.")
    accuracy: float | None = Field(description="correct / reviewed_predictions.")
    feedback_rate: float | None = Field(description="reviewed_predictions / total_predictions.")
    total_feedback: int = Field(description="Verdict rows submitted in the window.")
    feedback_by_source: dict[FeedbackSource, int] = Field(
        description="Verdict rows submitted in the window, by source."
    )
    per_class: dict[ClassName, ClassStatsOut] = Field(
        description="Figures for each predicted class."
    )


class PredictionRecordOut(PredictionOut):
    """A stored prediction with what was recorded about its image, and its verdicts."""

    user_id: str = Field(description="Who asked.")
    user_location: str | None = Field(description="Where, as the client said.")
    image_hash: str = Field(description="SHA-256 of the uploaded bytes.")
    image_size_kb: float = Field(description="Size of the upload in KiB.")
    image_width: int = Field(description="Width of the image as viewed (EXIF applied).")
    image_height: int = Field(description="Height of the image as viewed (EXIF applied).")
    image_format: str | None = Field(description="JPEG, PNG or WEBP.")
    feedback: list[FeedbackOut] = Field(description="Every verdict, oldest first.")


class PredictionSummaryOut(BaseModel):
    """One line of a prediction listing."""

    prediction_id: uuid.UUID = Field(description="Id of the prediction.")
    user_id: str = Field(description="Who asked.")
    user_location: str | None = Field(description="Where, as the client said.")
    predicted_class_name: ClassName = Field(description="Healthy or Stage1..Stage6.")
    confidence: float = Field(description="Calibrated probability of that class.")
    model_version: str = Field(description="Version of the model that answered.")
    timestamp: datetime = Field(description="When it was made (UTC).")


class PredictionPageOut(BaseModel):
    """A page of predictions, newest first."""

    items: list[PredictionSummaryOut] = Field(description="Predictions, newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end.")


class HealthOut(BaseModel):
    """Liveness."""

    status: Literal["ok"] = Field(description="Always `ok` when the process answers.")


class ReadyOut(BaseModel):
    """Readiness, and what it depends on."""

    status: Literal["ready", "degraded", "not_ready"] = Field(
        description="`ready` and `degraded` answer 200, `not_ready` 503. `degraded`: the "
        "database does not answer, but predictions are served and their records spooled."
    )
    database: bool = Field(description="The database answers and its schema is current.")
    spool: bool = Field(description="The local spool is on and readable (docs/reliability.md).")
    spool_depth: int = Field(description="Records waiting in this host's spool for the database.")
    model: bool = Field(description="The production model is loaded.")
    model_version: str | None = Field(description="Version of the loaded model, if any.")
    problems: list[str] = Field(description="Why it is not ready or degraded; empty when ready.")


class ModelInfoOut(BaseModel):
    """The serving model and its card."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str = Field(description="Registered name of the serving model.")
    model_version: str = Field(description="Its version in the registry.")
    classes: list[ClassName] = Field(description="The classes it predicts, by id.")
    input_size: int = Field(description="Side in pixels of the square image it looks at.")
    embedding_dim: int | None = Field(description="Length of its embedding output.")
    onnx_sha256: str = Field(description="SHA-256 of the ONNX file.")
    created_at: str | None = Field(description="When it was trained (ISO 8601, UTC).")
    metrics: dict[str, Any] = Field(description="From the model card: held-out accuracy, ECE, ...")
    data: dict[str, Any] = Field(description="From the model card: how the training data was made.")


class DriftReportOut(BaseModel):
    """One drift run: windows, scores, and per test and feature what it found (docs/drift.md)."""

    model_config = ConfigDict(protected_namespaces=())

    report_id: int = Field(description="Id of the stored report.")
    run_at: datetime = Field(description="When the run ended its current window (UTC).")
    model_version: str = Field(description="The model version whose traffic was tested.")
    reference_source: str = Field(
        description="`model`: the version's held-out leaves; `live:...`: a window of its traffic."
    )
    reference_size: int = Field(description="Predictions in the reference.")
    window_start: datetime = Field(description="Start of the current window (UTC).")
    window_end: datetime = Field(description="End of the current window (UTC).")
    current_size: int = Field(description="Predictions in the current window.")
    status: Literal["ok", "drift", "not_enough_data"] = Field(
        description="`not_enough_data` when either side has fewer than the minimum sample."
    )
    drifted: bool = Field(description="Whether any test flagged drift.")
    retraining_recommended: bool = Field(
        description="Drift in this run and the ones before it, as many as drift_persistence."
    )
    scores: dict[str, float | None] = Field(
        description="data_drift_score per metric type, in [0, 1]; null without enough data."
    )
    details: dict[str, Any] = Field(
        description="Per feature: KS statistic, p-values, PSI, means, direction, drifted; and the "
        "class, confidence and embedding tests."
    )
    seconds: float = Field(description="How long the run took.")


class FaultIn(BaseModel):
    """A fault to inject on one route: added latency, a share of 5xx answers, or both."""

    model_config = ConfigDict(extra="forbid")

    route: str = Field(description="Route template, as in the metrics, e.g. /api/v1/predict.")
    latency_ms: Annotated[int, Field(ge=0, le=60_000)] = Field(
        0, description="Added to every request of the route, in milliseconds."
    )
    error_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        0, description="Share of the route's requests answered 500 injected_fault."
    )
    duration_seconds: Annotated[float, Field(gt=0, le=86_400)] | None = Field(
        None, description="The fault clears itself after this long; default: until cleared."
    )

    @model_validator(mode="after")
    def _does_something(self) -> Self:
        if self.latency_ms == 0 and self.error_ratio == 0:
            raise ValueError("a fault needs latency_ms > 0 or error_ratio > 0 (DELETE clears)")
        return self


class FaultOut(BaseModel):
    """A fault in force."""

    route: str = Field(description="Route template the fault applies to.")
    latency_ms: int = Field(description="Milliseconds added to each request.")
    error_ratio: float = Field(description="Share of requests answered 500 injected_fault.")
    set_at: datetime = Field(description="When the fault was set (UTC).")
    expires_at: datetime | None = Field(description="When it clears itself; None: when cleared.")


class FaultsOut(BaseModel):
    """The faults in force, and how many a DELETE removed."""

    faults: list[FaultOut] = Field(description="The faults in force.")
    removed: int | None = Field(None, description="Faults a DELETE removed.")


class ModelReloadOut(BaseModel):
    """The version serving after a reload, and whether it changed."""

    model_config = ConfigDict(protected_namespaces=())

    model_version: str | None = Field(description="The version serving now (None: no model).")
    changed: bool = Field(description="Whether this call switched to another version.")
