"""The advisor's loop: alerts between prediction points, interventions, the webhook outbox and its log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("cohort", sa.String(64), nullable=False),
        sa.Column("point", sa.String(64), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("previous_point", sa.String(64), nullable=False),
        sa.Column("previous_probability", sa.Float(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("previous_tier", sa.String(16), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("rise", sa.Float(), nullable=False),
        sa.Column("kinds", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("cohort", "point", "student_id", name="uq_alerts_cohort_point_student"),
    )
    op.create_index("ix_alerts_student", "alerts", ["student_id"])
    op.create_index(
        "ix_alerts_cohort_page",
        "alerts",
        ["cohort", sa.text("created_at DESC"), sa.text("rise DESC"), "student_id"],
    )
    op.create_table(
        "interventions",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("cohort", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("on_date", sa.Date(), nullable=False),
        sa.Column("staff_id", sa.String(128), nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("key_id", sa.Integer(), sa.ForeignKey("api_keys.id", name="fk_interventions_key"), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_interventions_student", "interventions", ["student_id", "on_date"])
    op.create_index("ix_interventions_cohort", "interventions", ["cohort"])
    op.create_table(
        "webhook_subscribers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "webhook_outbox",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column(
            "subscriber_id",
            sa.Integer(),
            sa.ForeignKey("webhook_subscribers.id", name="fk_webhook_outbox_subscriber"),
            nullable=False,
        ),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("cohort", sa.String(64), nullable=False),
        sa.Column("point", sa.String(64), nullable=False),
        sa.Column("n_alerts", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.UniqueConstraint("delivery_id", name="uq_webhook_outbox_delivery"),
    )
    op.create_index("ix_webhook_outbox_pending", "webhook_outbox", ["delivered_at", "subscriber_id", "id"])
    op.create_index("ix_webhook_outbox_cohort_point", "webhook_outbox", ["cohort", "point"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
        sa.Column("outbox_id", _BIGID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(200), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
    )
    op.create_index("ix_webhook_deliveries_outbox", "webhook_deliveries", ["outbox_id"])


def downgrade() -> None:
    for name in ("webhook_deliveries", "webhook_outbox", "webhook_subscribers", "interventions", "alerts"):
        op.drop_table(name)
