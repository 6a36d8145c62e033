"""Chained audit checkpoints: each one names the previous checkpoint (seq and digest), the
segment it speaks for, and whether its signer vouched for it or recorded a discontinuity.

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing rows stay unchained v1 checkpoints (prev_digest NULL): their signatures cover
    # the v1 bytes, which have none of these fields.
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.add_column(sa.Column("prev_seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("prev_digest", sa.LargeBinary(32), nullable=True))
        batch.add_column(sa.Column("kind", sa.Text(), nullable=False, server_default="checkpoint"))
        batch.add_column(sa.Column("from_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.drop_column("from_seq")
        batch.drop_column("kind")
        batch.drop_column("prev_digest")
        batch.drop_column("prev_seq")
