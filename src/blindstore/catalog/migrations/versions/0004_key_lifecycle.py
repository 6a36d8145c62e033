"""Key lifecycle: shredded tenants, per data-subject keys, crypto-shredding records.

``tenants.shredded`` marks a crypto-shredded tenant; ``subject_keys`` maps a digest of a data
subject's id to the Transit key of that subject (at most one live key per subject: a partial
unique index); ``shreds`` records each shredding request, its grace period and its certificate.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("shredded", sa.Double(), nullable=True))
    op.create_table(
        "subject_keys",
        sa.Column("key_name", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("subject_digest", sa.LargeBinary(32), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("shredded", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.tenant_id"],
            name="fk_subject_keys_tenant_id_tenants",
        ),
        sa.PrimaryKeyConstraint("key_name", name="pk_subject_keys"),
    )
    op.create_index(
        "ix_subject_keys_tenant_id_subject_digest",
        "subject_keys",
        ["tenant_id", "subject_digest"],
        unique=True,
        sqlite_where=sa.text("shredded IS NULL"),
        postgresql_where=sa.text("shredded IS NULL"),
    )
    op.create_table(
        "shreds",
        sa.Column("shred_id", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.LargeBinary(16), nullable=False),
        sa.Column("key_names", sa.Text(), nullable=False),
        sa.Column("requested", sa.Double(), nullable=False),
        sa.Column("destroy_after", sa.Double(), nullable=False),
        sa.Column("destroyed", sa.Double(), nullable=True),
        sa.Column("operator", sa.Text(), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("shred_id", name="pk_shreds"),
    )


def downgrade() -> None:
    op.drop_table("shreds")
    op.drop_index("ix_subject_keys_tenant_id_subject_digest", table_name="subject_keys")
    op.drop_table("subject_keys")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("shredded")
