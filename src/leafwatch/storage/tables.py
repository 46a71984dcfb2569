"""The database tables, with the field names of the Black Sigatoka system LeafWatch serves."""

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
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
