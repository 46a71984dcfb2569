"""Response bodies of the realized-quality analytics; field descriptions become the OpenAPI docs."""

from datetime import datetime

from pydantic import BaseModel, Field

from leafwatch.schemas import ClassName


class ClassQualityOut(BaseModel):
    """One class's figures in a window."""

    predictions: int = Field(description="Predictions of this class in the window.")
    reviewed: int = Field(description="Of those, how many have a verdict.")
    correct: int = Field(description="Of those, how many the verdict says were right.")
    actual: int = Field(description="Reviewed predictions whose true class is this one.")
    precision: float | None = Field(
        description="correct / reviewed: how often a prediction of this class is right."
    )
    recall: float | None = Field(
        description="Of the reviewed leaves truly of this class, the share predicted as it."
    )


class WindowQualityOut(BaseModel):
    """Realized quality of one model version over one window."""

    model_version: str = Field(description="The model version that made the predictions.")
    window: str = Field(description="1h, 24h, 7d, 30d (ending at `end`), or `range`.")
    start: datetime = Field(description="Start of the window, inclusive (UTC).")
    end: datetime = Field(description="End of the window, exclusive (UTC).")
    predictions: int = Field(description="Predictions made in the window.")
    reviewed: int = Field(description="Of those, how many have a verdict (one counts each).")
    correct: int = Field(description="Reviewed predictions whose effective verdict says right.")
    accuracy: float | None = Field(description="correct / reviewed; null with no verdicts.")
    accuracy_low: float | None = Field(
        description="Lower bound of the 95% Wilson score interval of the accuracy."
    )
    accuracy_high: float | None = Field(
        description="Upper bound of the 95% Wilson score interval of the accuracy."
    )
    mean_confidence: float | None = Field(description="Mean confidence of every prediction.")
    mean_confidence_correct: float | None = Field(
        description="Mean confidence of the predictions judged right."
    )
    mean_confidence_incorrect: float | None = Field(
        description="Mean confidence of the predictions judged wrong."
    )
    per_class: dict[ClassName, ClassQualityOut] = Field(
        description="Precision by predicted class, recall by true class."
    )
    confusion_matrix: list[list[int]] = Field(
        description="Reviewed predictions: row = true class, column = predicted class, "
        "both in the order of `classes`."
    )


class QualityOut(BaseModel):
    """Realized quality from feedback, per model version and window."""

    start: datetime | None = Field(description="The `from` asked for (UTC), or null.")
    end: datetime = Field(description="The `to` asked for, or the time of the request (UTC).")
    model_version: str | None = Field(description="The version asked for, or null for all.")
    confidence_level: float = Field(description="Confidence level of the accuracy intervals.")
    classes: list[ClassName] = Field(description="Class order of the confusion matrices.")
    windows: list[WindowQualityOut] = Field(
        description="One entry per model version with predictions in any window, and window."
    )
