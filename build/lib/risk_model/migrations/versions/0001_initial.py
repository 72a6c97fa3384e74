"""The initial store: scores, score_runs and outcomes as the score flow writes them, plus
api_keys and audit_log for the advising API.

Tables and indexes are created only if missing, so a store made before migrations existed
(by `metadata.create_all`) is adopted as it is and gains what it lacks.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
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
        "scores",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("cohort", sa.String(64), nullable=False),
        sa.Column("point", sa.String(64), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("factors", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("cohort", "point", "student_id", name="uq_scores_cohort_point_student"),
        if_not_exists=True,
    )
    op.create_index("ix_scores_student", "scores", ["student_id", "scored_at"], if_not_exists=True)
    op.create_index("ix_scores_cohort_rank", "scores", ["cohort", "point", "rank"], if_not_exists=True)
    op.create_index(
        "ix_scores_cohort_risk",
        "scores",
        ["cohort", "point", sa.text("probability DESC"), "student_id"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_scores_cohort_tier_risk",
        "scores",
        ["cohort", "point", "tier", sa.text("probability DESC"), "student_id"],
        if_not_exists=True,
    )
    op.create_table(
        "score_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("cohort", sa.String(64), nullable=False),
        sa.Column("point", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("n_students", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("cohort", "point", name="uq_score_runs_cohort_point"),
        if_not_exists=True,
    )
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("cohort", sa.String(64), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("at_risk", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("cohort", "student_id", name="uq_outcomes_cohort_student"),
        if_not_exists=True,
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_hash"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.Integer(), sa.ForeignKey("api_keys.id", name="fk_audit_log_key"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("student_id", sa.String(128), nullable=False),
        sa.Column("cohort", sa.String(64), nullable=True),
        sa.Column("point", sa.String(64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_audit_log_student", "audit_log", ["student_id", "at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("api_keys")
    # scores, score_runs and outcomes hold the results of real runs: never dropped by a downgrade
