"""Bucket keys: the ``bucket_keys`` table of the opt-in bucket-key mode.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of schema.ByteOrderedText: revisions never import the live schema. Bucket names
# are byte-ordered in every table, this one included.
_byte_ordered_text = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


def upgrade() -> None:
    """Create ``bucket_keys`` and its rotation index."""
    op.create_table(
        "bucket_keys",
        sa.Column("bucket_key_id", sa.LargeBinary(16), nullable=False),
        sa.Column("tenant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("bucket", _byte_ordered_text, nullable=False),
        sa.Column("wrapped", sa.Text(), nullable=False),
        sa.Column("key_name", sa.Text(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("bucket_key_id", name="pk_bucket_keys"),
    )
    op.create_index(
        "ix_bucket_keys_key_name_key_version", "bucket_keys", ["key_name", "key_version"]
    )


def downgrade() -> None:
    """Drop ``bucket_keys``: objects written in bucket-key mode become unreadable."""
    op.drop_index("ix_bucket_keys_key_name_key_version", table_name="bucket_keys")
    op.drop_table("bucket_keys")
