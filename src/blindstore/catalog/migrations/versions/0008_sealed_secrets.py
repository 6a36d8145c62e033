"""Sealed S3 secrets: access keys keep their secret wrapped under the credentials Transit key.

Schema only: Alembic cannot call Vault. ``sealed_secret`` is added and ``secret_key`` (the clear
secret of rows written before this revision) becomes nullable; the gateway seals the clear
secrets at start (``blindstore serve``/``dev``) or ``blindstore access-keys seal`` does, and
empties ``secret_key`` (docs/operations.md, "S3 credentials").

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_keys") as batch:
        batch.alter_column("secret_key", existing_type=sa.Text(), nullable=True)
        batch.add_column(sa.Column("sealed_secret", sa.Text(), nullable=True))


def downgrade() -> None:
    # A sealed secret cannot be unsealed here (no Vault): its row goes, rather than a row that
    # no revision before this one could use.
    op.execute("DELETE FROM access_keys WHERE secret_key IS NULL")
    with op.batch_alter_table("access_keys") as batch:
        batch.drop_column("sealed_secret")
        batch.alter_column("secret_key", existing_type=sa.Text(), nullable=False)
