"""Replica quarantine, and keyed data-subject digests.

``objects.quarantined`` is when the last replica of an object failed verification on a read
(seconds since the epoch), NULL for a healthy object. A replica that fails while another remains
is not recorded here: it moves from ``backends`` to ``repairs`` (``blindstore repair`` copies it
again from a replica that verifies), which needs no new column.

``subject_keys.digest_keyed`` says whether ``subject_digest`` is the keyed digest (OpenBao Transit
HMAC over the former SHA-256 digest, ``blindstore.subjects``): rows written before this revision
hold the unkeyed SHA-256 digest (false) until the gateway converts them at its next start.

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("objects") as batch:
        batch.add_column(sa.Column("quarantined", sa.Double(), nullable=True))
    with op.batch_alter_table("subject_keys") as batch:
        batch.add_column(
            sa.Column("digest_keyed", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("subject_keys") as batch:
        batch.drop_column("digest_keyed")
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("quarantined")
