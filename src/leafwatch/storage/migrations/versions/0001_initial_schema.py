"""Initial schema: predictions, feedback, model_versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("onnx_sha256", sa.String(length=64), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.Column("first_served_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_served_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_name", "version", name="uq_model_versions"),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("user_location", sa.String(length=256), nullable=True),
        sa.Column("image_path", sa.String(length=512), nullable=False),
        sa.Column("image_size_kb", sa.Float(), nullable=False),
        sa.Column("image_width", sa.Integer(), nullable=False),
        sa.Column("image_height", sa.Integer(), nullable=False),
        sa.Column("image_hash", sa.String(length=64), nullable=False),
        sa.Column("predicted_class_id", sa.SmallInteger(), nullable=False),
        sa.Column("predicted_class_name", sa.String(length=16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("inference_time_ms", sa.Float(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_predictions_timestamp", "predictions", ["timestamp"])
    op.create_index("ix_predictions_user_id_timestamp", "predictions", ["user_id", "timestamp"])
    op.create_index(
        "ix_predictions_model_version_timestamp", "predictions", ["model_version", "timestamp"]
    )
    op.create_index("ix_predictions_image_hash", "predictions", ["image_hash"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("prediction_id", sa.Uuid(), nullable=False),
        sa.Column("is_correct", sa.Boolean(), nullable=False),
        sa.Column("correct_class_id", sa.SmallInteger(), nullable=True),
        sa.Column("correct_class_name", sa.String(length=16), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("confidence_rating", sa.SmallInteger(), nullable=True),
        sa.Column("feedback_source", sa.String(length=32), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "feedback_source IN ('mobile_app', 'web', 'expert_review')", name="ck_feedback_source"
        ),
        sa.CheckConstraint(
            "confidence_rating IS NULL OR (confidence_rating BETWEEN 1 AND 5)",
            name="ck_feedback_confidence_rating",
        ),
        sa.ForeignKeyConstraint(["prediction_id"], ["predictions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_feedback_prediction_id", "feedback", ["prediction_id"])
    op.create_index("ix_feedback_timestamp", "feedback", ["timestamp"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("predictions")
    op.drop_table("model_versions")
