"""Accountability: the hash-chained audit log and its signed checkpoints; provenance, consent and
retention on objects and uploads.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BYTE_ORDERED = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.LargeBinary(16), nullable=True),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("bucket", _BYTE_ORDERED, nullable=True),
        sa.Column("key", _BYTE_ORDERED, nullable=True),
        sa.Column("object_id", sa.LargeBinary(16), nullable=True),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("backends", sa.Text(), nullable=False),
        sa.Column("key_name", sa.Text(), nullable=True),
        sa.Column("key_version", sa.Integer(), nullable=True),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_object_id", "audit_log", ["object_id"])
    op.create_index("ix_audit_log_tenant_id_time", "audit_log", ["tenant_id", "time"])
    op.create_index("ix_audit_log_principal_time", "audit_log", ["principal", "time"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("key_name", sa.Text(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_checkpoints"),
    )
    for table in ("objects", "uploads"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("provenance", sa.Text(), nullable=False, server_default="{}")
            )
            batch.add_column(sa.Column("retention_until", sa.Double(), nullable=True))
    op.create_index("ix_objects_retention_until", "objects", ["retention_until"])


def downgrade() -> None:
    op.drop_index("ix_objects_retention_until", table_name="objects")
    for table in ("uploads", "objects"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("retention_until")
            batch.drop_column("provenance")
    op.drop_table("audit_checkpoints")
    op.drop_index("ix_audit_log_principal_time", table_name="audit_log")
    op.drop_index("ix_audit_log_tenant_id_time", table_name="audit_log")
    op.drop_index("ix_audit_log_object_id", table_name="audit_log")
    op.drop_table("audit_log")
