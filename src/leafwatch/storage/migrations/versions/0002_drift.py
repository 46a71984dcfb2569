"""Drift: features of each prediction, drift reports, and claims on scheduled job periods.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FEATURES = (
    "brightness_mean",
    "brightness_std",
    "red_mean",
    "green_mean",
    "blue_mean",
    "saturation_mean",
    "leaf_green_share",
    "sharpness",
    "contrast",
    "width",
    "height",
    "aspect_ratio",
    "file_size_kb",
    "confidence",
    "entropy",
)


def upgrade() -> None:
    op.create_table(
        "prediction_features",
        sa.Column("prediction_id", sa.Uuid(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=False) for name in FEATURES),
        sa.Column("image_format", sa.String(length=8), nullable=False),
        sa.Column("predicted_class", sa.SmallInteger(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["prediction_id"], ["predictions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("prediction_id"),
    )
    op.create_index("ix_prediction_features_timestamp", "prediction_features", ["timestamp"])
    op.create_index(
        "ix_prediction_features_model_version_timestamp",
        "prediction_features",
        ["model_version", "timestamp"],
    )
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("reference_source", sa.String(length=32), nullable=False),
        sa.Column("reference_size", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current_size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("retraining_recommended", sa.Boolean(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_drift_reports_run_at", "drift_reports", ["run_at"])
    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("job", "period_start"),
    )


def downgrade() -> None:
    op.drop_table("job_runs")
    op.drop_table("drift_reports")
    op.drop_table("prediction_features")
