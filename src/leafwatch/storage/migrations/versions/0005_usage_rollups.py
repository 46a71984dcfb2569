"""Daily rollups of usage and quality, read by the analytics for whole past UTC days.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rollup_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.Column("verdicts", sa.Integer(), nullable=False),
        sa.Column("active_users", sa.Integer(), nullable=False),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_table(
        "usage_hours",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("hour", sa.SmallInteger(), nullable=False),
        sa.Column("predicted_class_name", sa.String(length=16), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.Column("located", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "hour", "predicted_class_name"),
    )
    op.create_table(
        "usage_user_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("day", "user_id"),
    )
    op.create_index("ix_usage_user_days_user_id_day", "usage_user_days", ["user_id", "day"])
    op.create_table(
        "usage_users",
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("back_next_day", sa.Boolean(), nullable=False),
        sa.Column("back_within_week", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "usage_location_users",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_location", sa.String(length=256), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "user_location", "user_id"),
    )
    op.create_table(
        "usage_locations",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_location", sa.String(length=256), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "user_location"),
    )
    op.create_table(
        "usage_location_spans",
        sa.Column("user_location", sa.String(length=256), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("user_location", "user_id"),
    )
    op.create_table(
        "usage_judged",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("verdict_day", sa.Date(), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "verdict_day"),
    )
    op.create_table(
        "quality_day_cells",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("predicted_class_id", sa.SmallInteger(), nullable=False),
        sa.Column("is_correct", sa.Boolean(), nullable=True),
        sa.Column("true_class_id", sa.SmallInteger(), nullable=True),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quality_day_cells_day", "quality_day_cells", ["day"])


def downgrade() -> None:
    op.drop_index("ix_quality_day_cells_day", table_name="quality_day_cells")
    op.drop_table("quality_day_cells")
    op.drop_table("usage_judged")
    op.drop_table("usage_location_spans")
    op.drop_table("usage_locations")
    op.drop_table("usage_location_users")
    op.drop_table("usage_users")
    op.drop_index("ix_usage_user_days_user_id_day", table_name="usage_user_days")
    op.drop_table("usage_user_days")
    op.drop_table("usage_hours")
    op.drop_table("rollup_days")
