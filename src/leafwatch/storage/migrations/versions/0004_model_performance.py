"""Daily realized quality per model version (`model_performance`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_performance",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.Column("reviewed", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("wilson_low", sa.Float(), nullable=True),
        sa.Column("wilson_high", sa.Float(), nullable=True),
        sa.Column("mean_confidence", sa.Float(), nullable=True),
        sa.Column("mean_confidence_correct", sa.Float(), nullable=True),
        sa.Column("mean_confidence_incorrect", sa.Float(), nullable=True),
        sa.Column("per_class", sa.JSON(), nullable=False),
        sa.Column("confusion", sa.JSON(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_version", "day", name="uq_model_performance_version_day"),
    )
    op.create_index("ix_model_performance_day", "model_performance", ["day"])


def downgrade() -> None:
    op.drop_index("ix_model_performance_day", table_name="model_performance")
    op.drop_table("model_performance")
