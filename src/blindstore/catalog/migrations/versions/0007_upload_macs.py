"""Tenancy: pending uploads and their parts carry a MAC keyed from the object's DEK, and an
object id is unique among objects and among uploads.

Uploads pending at migration time get no MAC (it needs their DEK, which only Transit can unwrap):
the gateway refuses to continue or complete them (InvalidRequest: abort and upload again);
aborting and listing them still work.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _refuse_reused_object_ids()
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("row_mac", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("upload_parts") as batch:
        batch.add_column(sa.Column("row_mac", sa.LargeBinary(), nullable=True))
    op.create_index("ix_objects_object_id", "objects", ["object_id"], unique=True)
    op.create_index("ix_uploads_object_id", "uploads", ["object_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_uploads_object_id", table_name="uploads")
    op.drop_index("ix_objects_object_id", table_name="objects")
    with op.batch_alter_table("upload_parts") as batch:
        batch.drop_column("row_mac")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("row_mac")


def _refuse_reused_object_ids() -> None:
    """Stop with a clear message (rather than a unique-index error) if an object id is already
    used twice: the gateway never does that, so the catalog was edited; investigate first."""
    reused = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT COUNT(*) FROM ("
                " SELECT object_id FROM objects UNION ALL SELECT object_id FROM uploads"
                ") AS ids GROUP BY object_id HAVING COUNT(*) > 1"
            )
        )
        .first()
    )
    if reused is not None:
        raise RuntimeError(
            "catalog revision 0007: some object ids are used by more than one object or "
            "pending upload (catalog rows were copied or edited); resolve this before upgrading"
        )
