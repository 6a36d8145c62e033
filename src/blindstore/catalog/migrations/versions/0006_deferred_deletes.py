"""Deferred deletion: the blobs of replaced or deleted rows wait out a delay before deletion, so
that a read streaming them is never cut.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deferred_deletes",
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("container", sa.Text(), nullable=False),
        sa.Column("blob", sa.Text(), nullable=False),
        sa.Column("not_before", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("backend", "container", "blob", name="pk_deferred_deletes"),
    )
    op.create_index("ix_deferred_deletes_not_before", "deferred_deletes", ["not_before"])


def downgrade() -> None:
    # Blobs still waiting become orphans that `blindstore gc` collects after its grace period.
    op.drop_index("ix_deferred_deletes_not_before", table_name="deferred_deletes")
    op.drop_table("deferred_deletes")
