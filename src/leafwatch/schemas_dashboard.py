"""What `GET /api/v1/dashboard/data` answers: the figures the built-in dashboard page draws."""

from datetime import datetime

from pydantic import BaseModel, Field


class TrafficPointOut(BaseModel):
    """Request figures over one interval between two snapshots of the counters."""

    at: datetime = Field(description="End of the interval (UTC).")
    seconds: float = Field(description="Length of the interval, seconds.")
    requests_per_second: float = Field(description="Requests answered per second, all statuses.")
    by_status: dict[str, float] = Field(
        description="Requests per second by status class (2xx, 3xx, 4xx, 5xx)."
    )
    error_rate: float | None = Field(
        description="Share of answers that were 5xx; null without requests in the interval."
    )
    p50_ms: float | None = Field(description="Median latency, ms; null without requests.")
    p95_ms: float | None = Field(description="95th percentile latency, ms; null without requests.")
    p99_ms: float | None = Field(description="99th percentile latency, ms; null without requests.")


class TrafficOut(BaseModel):
    """Recent request traffic, from the process's counters (the dashboard's own calls excluded)."""

    points: list[TrafficPointOut] = Field(
        description="One point per interval between snapshots, oldest first; empty at first."
    )
    totals_by_status: dict[str, float] = Field(
        description="Requests answered since the counters started, by status class."
    )


class ClassCountsOut(BaseModel):
    """Predictions per predicted class over one window."""

    window: str = Field(description="Window ending now: 24h or 7d.")
    counts: dict[str, int] = Field(description="Predictions of each class (every class listed).")


class AccuracyOut(BaseModel):
    """Realized (from feedback) and estimated accuracy of one model version over one window."""

    model_version: str = Field(description="Model version whose predictions are judged.")
    window: str = Field(description="Window of prediction times ending now: 1h, 24h, 7d or 30d.")
    reviewed: int = Field(description="Predictions in the window with an effective verdict.")
    correct: int = Field(description="Of those, how many were right.")
    accuracy: float | None = Field(description="correct / reviewed; null without verdicts.")
    lower: float | None = Field(description="Lower end of the 95% Wilson interval of accuracy.")
    upper: float | None = Field(description="Upper end of the 95% Wilson interval of accuracy.")
    estimated: float | None = Field(
        description="Estimated accuracy: mean calibrated confidence of the window's predictions."
    )


class DriftOut(BaseModel):
    """The latest drift report's scores."""

    run_at: datetime = Field(description="When the run ended (UTC).")
    model_version: str = Field(description="Model version whose predictions were compared.")
    status: str = Field(description="Outcome of the run, e.g. ok, drift or insufficient_data.")
    drifted: bool = Field(description="Whether any test flagged drift.")
    scores: dict[str, float | None] = Field(
        description="data_drift_score by metric type, in [0, 1]; null without enough data."
    )


class UsageWindowOut(BaseModel):
    """Who used the service over one window."""

    window: str = Field(description="Window ending now: 24h or 7d.")
    predictions: int = Field(description="Predictions made in the window.")
    active_users: int = Field(description="Distinct user ids that asked for a prediction.")
    reviewed: int = Field(description="Predictions in the window with at least one verdict.")
    feedback_rate: float | None = Field(
        description="reviewed / predictions; null without predictions."
    )


class DashboardOut(BaseModel):
    """Everything the built-in dashboard draws, in one answer."""

    generated_at: datetime = Field(description="When these figures were computed (UTC).")
    model_name: str | None = Field(description="Name of the served model; null when none is.")
    model_version: str | None = Field(description="Version of the served model; null when none.")
    traffic: TrafficOut = Field(description="Request rate, error rate and latency percentiles.")
    predictions_by_class: list[ClassCountsOut] = Field(
        description="Predicted classes over the last 24 hours and 7 days."
    )
    accuracy: list[AccuracyOut] = Field(
        description="Per model version and window, realized and estimated accuracy."
    )
    drift: DriftOut | None = Field(description="The latest drift report; null before the first.")
    rejected_uploads: dict[str, float] = Field(
        description="Uploads refused before the model since the counters started, by reason."
    )
    usage: list[UsageWindowOut] = Field(description="Usage over the last 24 hours and 7 days.")
