"""Initial catalog: tenants, access keys, buckets, objects, multipart uploads and parts.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of schema.ByteOrderedText: revisions never import the live schema.
_byte_ordered_text = sa.Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("key_name", sa.Text(), nullable=False),
        sa.Column("container", sa.Text(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenants"),
        sa.UniqueConstraint("name", name="uq_tenants_name"),
    )
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.Text(), nullable=False),
        sa.Column("secret_key", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.tenant_id"], name="fk_access_keys_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("access_key_id", name="pk_access_keys"),
    )
    op.create_index("ix_access_keys_tenant_id", "access_keys", ["tenant_id"])
    op.create_table(
        "buckets",
        sa.Column("name", _byte_ordered_text, nullable=False),
        sa.Column("tenant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("region", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.tenant_id"], name="fk_buckets_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("name", name="pk_buckets"),
    )
    op.create_index("ix_buckets_tenant_id_name", "buckets", ["tenant_id", "name"])
    op.create_table(
        "objects",
        sa.Column("bucket", _byte_ordered_text, nullable=False),
        sa.Column("key", _byte_ordered_text, nullable=False),
        sa.Column("tenant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("object_id", sa.LargeBinary(16), nullable=False),
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("container", sa.Text(), nullable=False),
        sa.Column("parts", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("last_modified", sa.Double(), nullable=False),
        sa.Column("wrapped_dek", sa.Text(), nullable=False),
        sa.Column("key_name", sa.Text(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("user_metadata", sa.Text(), nullable=False),
        sa.Column("checksums", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("row_mac", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["bucket"], ["buckets.name"], name="fk_objects_bucket_buckets"),
        sa.PrimaryKeyConstraint("bucket", "key", name="pk_objects"),
    )
    op.create_table(
        "uploads",
        sa.Column("upload_id", sa.Text(), nullable=False),
        sa.Column("bucket", _byte_ordered_text, nullable=False),
        sa.Column("key", _byte_ordered_text, nullable=False),
        sa.Column("tenant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("object_id", sa.LargeBinary(16), nullable=False),
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("container", sa.Text(), nullable=False),
        sa.Column("wrapped_dek", sa.Text(), nullable=False),
        sa.Column("key_name", sa.Text(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("initiated", sa.Double(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("user_metadata", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("checksum_algorithm", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["bucket"], ["buckets.name"], name="fk_uploads_bucket_buckets"),
        sa.PrimaryKeyConstraint("upload_id", name="pk_uploads"),
    )
    op.create_index("ix_uploads_bucket_key_upload_id", "uploads", ["bucket", "key", "upload_id"])
    op.create_table(
        "upload_parts",
        sa.Column("upload_id", sa.Text(), nullable=False),
        sa.Column("part_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("blob", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("last_modified", sa.Double(), nullable=False),
        sa.Column("checksums", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["uploads.upload_id"],
            name="fk_upload_parts_upload_id_uploads",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("upload_id", "part_number", name="pk_upload_parts"),
    )


def downgrade() -> None:
    """Drop every table (destroys the catalog: for development databases only)."""
    for table in ("upload_parts", "uploads", "objects", "buckets", "access_keys", "tenants"):
        op.drop_table(table)
