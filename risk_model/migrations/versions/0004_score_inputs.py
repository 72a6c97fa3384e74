"""scores.inputs: the model input of a student whose factors are computed when first read.

Top factors (exact TreeSHAP) are computed at scoring for the tiers advisors act on; every other
student keeps the values the model read, so the API (or an alert) computes their factors from
them on first use and stores the factors in place of the inputs. NULL: the factors are stored
(or the student was scored without factors).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a nullable column: one ALTER TABLE on both databases, no copy of the scores table; a store made by
    # `metadata.create_all` before migrations existed may have it already (0001 adopts such stores)
    if "inputs" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("scores")}:
        op.add_column("scores", sa.Column("inputs", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("inputs")
