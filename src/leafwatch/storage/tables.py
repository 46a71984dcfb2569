"""The database tables, with the field names of the Black Sigatoka system LeafWatch serves."""

import uuid
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

FEEDBACK_SOURCES = ("mobile_app", "web", "expert_review")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: LeafWatch stores aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of LeafWatch's tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime}


class Prediction(Base):
    """One answered prediction request."""

    __tablename__ = "predictions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    user_location: Mapped[str | None] = mapped_column(String(256))
    image_path: Mapped[str] = mapped_column(String(512))
    image_size_kb: Mapped[float] = mapped_column(Float)
    image_width: Mapped[int] = mapped_column(Integer)
    image_height: Mapped[int] = mapped_column(Integer)
    image_hash: Mapped[str] = mapped_column(String(64))
    predicted_class_id: Mapped[int] = mapped_column(SmallInteger)
    predicted_class_name: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(128))
    inference_time_ms: Mapped[float] = mapped_column(Float)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    # `metadata` is taken by SQLAlchemy's declarative API; the column keeps the origin's name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)

    __table_args__ = (
        Index("ix_predictions_timestamp", "timestamp"),
        Index("ix_predictions_user_id_timestamp", "user_id", "timestamp"),
        Index("ix_predictions_model_version_timestamp", "model_version", "timestamp"),
        Index("ix_predictions_image_hash", "image_hash"),
    )


class Feedback(Base):
    """One verdict on a prediction; every verdict is kept."""

    __tablename__ = "feedback"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    prediction_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("predictions.id", ondelete="CASCADE")
    )
    is_correct: Mapped[bool]
    correct_class_id: Mapped[int | None] = mapped_column(SmallInteger)
    correct_class_name: Mapped[str | None] = mapped_column(String(16))
    user_comment: Mapped[str | None] = mapped_column(Text)
    confidence_rating: Mapped[int | None] = mapped_column(SmallInteger)
    feedback_source: Mapped[str] = mapped_column(String(32))
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint(
            "confidence_rating IS NULL OR (confidence_rating BETWEEN 1 AND 5)",
            name="ck_feedback_confidence_rating",
        ),
        CheckConstraint(
            "feedback_source IN ('mobile_app', 'web', 'expert_review')",
            name="ck_feedback_source",
        ),
        Index("ix_feedback_prediction_id", "prediction_id"),
        Index("ix_feedback_timestamp", "timestamp"),
    )


class ModelVersion(Base):
    """A model version this service has registered or served, with its card."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    onnx_sha256: Mapped[str] = mapped_column(String(64))
    card: Mapped[dict[str, Any]] = mapped_column(default=dict)
    first_served_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_served_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("model_name", "version", name="uq_model_versions"),)


class PredictionFeatureRow(Base):
    """What drift detection reads of one prediction, computed when it was made."""

    __tablename__ = "prediction_features"

    prediction_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("predictions.id", ondelete="CASCADE"), primary_key=True
    )
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    model_version: Mapped[str] = mapped_column(String(64))
    brightness_mean: Mapped[float] = mapped_column(Float)
    brightness_std: Mapped[float] = mapped_column(Float)
    red_mean: Mapped[float] = mapped_column(Float)
    green_mean: Mapped[float] = mapped_column(Float)
    blue_mean: Mapped[float] = mapped_column(Float)
    saturation_mean: Mapped[float] = mapped_column(Float)
    leaf_green_share: Mapped[float] = mapped_column(Float)
    sharpness: Mapped[float] = mapped_column(Float)
    contrast: Mapped[float] = mapped_column(Float)
    width: Mapped[float] = mapped_column(Float)
    height: Mapped[float] = mapped_column(Float)
    aspect_ratio: Mapped[float] = mapped_column(Float)
    file_size_kb: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    entropy: Mapped[float] = mapped_column(Float)
    image_format: Mapped[str] = mapped_column(String(8))
    predicted_class: Mapped[int] = mapped_column(SmallInteger)
    # float32 little-endian bytes: compact, and the same on SQLite and PostgreSQL.
    embedding: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        Index("ix_prediction_features_timestamp", "timestamp"),
        Index("ix_prediction_features_model_version_timestamp", "model_version", "timestamp"),
    )


class DriftReport(Base):
    """One drift run: its windows, its scores and, per test and feature, what it found."""

    __tablename__ = "drift_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    model_version: Mapped[str] = mapped_column(String(64))
    reference_source: Mapped[str] = mapped_column(String(32))
    reference_size: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    current_size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    drifted: Mapped[bool]
    retraining_recommended: Mapped[bool]
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seconds: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_drift_reports_run_at", "run_at"),)


class JobRun(Base):
    """A claim on one period of a scheduled job: the primary key lets exactly one process win."""

    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")


class InjectedFault(Base):
    """A fault injected on one route through the admin fault switch (tests and demonstrations)."""

    __tablename__ = "injected_faults"

    route: Mapped[str] = mapped_column(String(256), primary_key=True)
    latency_ms: Mapped[int] = mapped_column(Integer)
    error_ratio: Mapped[float] = mapped_column(Float)
    set_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]


class ModelPerformance(Base):
    """One model version's realized quality over the predictions of one UTC day."""

    __tablename__ = "model_performance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    predictions: Mapped[int] = mapped_column(Integer)
    reviewed: Mapped[int] = mapped_column(Integer)
    correct: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float | None] = mapped_column(Float)
    wilson_low: Mapped[float | None] = mapped_column(Float)
    wilson_high: Mapped[float | None] = mapped_column(Float)
    mean_confidence: Mapped[float | None] = mapped_column(Float)
    mean_confidence_correct: Mapped[float | None] = mapped_column(Float)
    mean_confidence_incorrect: Mapped[float | None] = mapped_column(Float)
    # {class name: {predicted, reviewed, correct, actual, precision, recall}}
    per_class: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {"classes": [...], "matrix": [[...]]}: rows are true classes, columns predicted ones.
    confusion: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Verdicts keep arriving after the day; a later run replaces the row with fresher figures.
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("model_version", "day", name="uq_model_performance_version_day"),
        Index("ix_model_performance_day", "day"),
    )


class RollupDay(Base):
    """A UTC day whose usage and quality rollups are stored, with what they were computed from."""

    __tablename__ = "rollup_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    # The day's predictions and the verdicts on them when rolled up: a different live count
    # (a late prediction, a late verdict, a deletion) makes the next rollup redo the day.
    predictions: Mapped[int] = mapped_column(Integer)
    verdicts: Mapped[int] = mapped_column(Integer)
    active_users: Mapped[int] = mapped_column(Integer)
    rolled_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageHour(Base):
    """Predictions of one UTC day and hour with one predicted class."""

    __tablename__ = "usage_hours"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    hour: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    predicted_class_name: Mapped[str] = mapped_column(String(16), primary_key=True)
    predictions: Mapped[int] = mapped_column(Integer)
    located: Mapped[int] = mapped_column(Integer)


class UsageUserDay(Base):
    """A user with at least one prediction on a UTC day."""

    __tablename__ = "usage_user_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)

    __table_args__ = (Index("ix_usage_user_days_user_id_day", "user_id", "day"),)


class UsageUser(Base):
    """A user's first and last rolled-up day, and whether they came back after the first."""

    __tablename__ = "usage_users"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    back_next_day: Mapped[bool]
    back_within_week: Mapped[bool]


class UsageLocationUser(Base):
    """A user's predictions at one `user_location` on a UTC day."""

    __tablename__ = "usage_location_users"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_location: Mapped[str] = mapped_column(String(256), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    predictions: Mapped[int] = mapped_column(Integer)


class UsageLocation(Base):
    """Predictions at one `user_location` on a UTC day."""

    __tablename__ = "usage_locations"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_location: Mapped[str] = mapped_column(String(256), primary_key=True)
    predictions: Mapped[int] = mapped_column(Integer)


class UsageLocationSpan(Base):
    """The last rolled-up day a user made a prediction at one `user_location`."""

    __tablename__ = "usage_location_spans"

    user_location: Mapped[str] = mapped_column(String(256), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_day: Mapped[date] = mapped_column(Date)


class UsageJudged(Base):
    """Predictions of a UTC day whose first verdict came on `verdict_day`."""

    __tablename__ = "usage_judged"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    verdict_day: Mapped[date] = mapped_column(Date, primary_key=True)
    predictions: Mapped[int] = mapped_column(Integer)


class QualityDayCell(Base):
    """Predictions of one UTC day and version sharing a predicted class and effective verdict."""

    __tablename__ = "quality_day_cells"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date)
    model_version: Mapped[str] = mapped_column(String(64))
    predicted_class_id: Mapped[int] = mapped_column(SmallInteger)
    is_correct: Mapped[bool | None]  # None: no verdict
    true_class_id: Mapped[int | None] = mapped_column(SmallInteger)
    predictions: Mapped[int] = mapped_column(Integer)
    confidence_sum: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_quality_day_cells_day", "day"),)


class ApiKey(Base):
    """A client's API key, kept as its SHA-256 only; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The client the key belongs to: its name is who the rate limit and the logs count.
    name: Mapped[str] = mapped_column(String(64))
    # The key's first characters, shown by `leafwatch keys list` to tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),)


ALERT_ACTIONS = ("none", "rolled_back", "skipped", "failed")


class AlertEvent(Base):
    """An alert received from Alertmanager, or a rollback made by hand, and what LeafWatch did."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(16))  # alertmanager, or cli for a rollback by hand
    alertname: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str | None] = mapped_column(String(16))  # firing or resolved
    severity: Mapped[str | None] = mapped_column(String(32))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    starts_at: Mapped[datetime | None]
    model_version: Mapped[str | None] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    action: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    from_version: Mapped[str | None] = mapped_column(String(64))
    to_version: Mapped[str | None] = mapped_column(String(64))
    # Set by an automatic rollback only. Unique: each version is rolled back automatically once,
    # whichever worker or replica gets the alert first; the others wait on the index and skip.
    auto_rollback_of: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("auto_rollback_of", name="uq_alert_events_auto_rollback_of"),
        CheckConstraint(
            "action IN ('none', 'rolled_back', 'skipped', 'failed')", name="ck_alert_events_action"
        ),
    )
