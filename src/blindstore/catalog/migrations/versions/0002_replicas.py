"""Replicas: objects, uploads and parts name every backend holding them; objects list repairs.

``objects.backend`` / ``uploads.backend`` (one name) become ``backends`` (a JSON list of names, in
read-preference order); ``objects.repairs`` lists targets that missed the write;
``uploads.quorum`` is the write quorum of the upload's placement; ``upload_parts.backends`` lists
where each pending part landed (before this revision: its upload's one backend). SQLite cannot
drop or retype columns in place, so every table change goes through Alembic's batch mode.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _table(name: str, *columns: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c, sa.Text()) for c in columns))


def _lists_from_names(name: str) -> None:
    """Fill ``backends`` with ``[backend]``, one UPDATE per distinct backend name."""
    table = _table(name, "backend", "backends")
    bind = op.get_bind()
    for (backend,) in bind.execute(sa.select(table.c.backend).distinct()).all():
        bind.execute(
            table.update()
            .where(table.c.backend == backend)
            .values(backends=json.dumps([backend], separators=(",", ":")))
        )


def _names_from_lists(name: str) -> None:
    """Fill ``backend`` with the first name of ``backends`` (the preferred replica)."""
    table = _table(name, "backend", "backends")
    bind = op.get_bind()
    for (backends,) in bind.execute(sa.select(table.c.backends).distinct()).all():
        names = json.loads(backends)
        bind.execute(
            table.update()
            .where(table.c.backends == backends)
            .values(backend=names[0] if names else "")
        )


def _saved_parts() -> list[sa.Row[tuple[object, ...]]]:
    """Every pending part row, when recreating ``uploads`` would delete them.

    Batch mode recreates a SQLite table by dropping it, and with foreign keys on, SQLite's DROP
    TABLE first deletes every row, cascading to ``upload_parts`` (``ON DELETE CASCADE``).
    """
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return []
    return list(bind.execute(sa.text("SELECT * FROM upload_parts")).all())


def _restore_parts(rows: list[sa.Row[tuple[object, ...]]]) -> None:
    if not rows:
        return
    bind = op.get_bind()
    parts = sa.Table("upload_parts", sa.MetaData(), autoload_with=bind)
    bind.execute(parts.delete())
    bind.execute(parts.insert(), [row._asdict() for row in rows])


def upgrade() -> None:
    """Convert each single backend name into a one-element list."""
    for name in ("objects", "uploads"):
        op.add_column(name, sa.Column("backends", sa.Text(), nullable=True))
        _lists_from_names(name)
    op.add_column("objects", sa.Column("repairs", sa.Text(), nullable=True))
    op.add_column("uploads", sa.Column("quorum", sa.Integer(), nullable=True))
    op.add_column("upload_parts", sa.Column("backends", sa.Text(), nullable=True))
    bind = op.get_bind()
    bind.execute(sa.text("UPDATE objects SET repairs = '[]'"))
    bind.execute(sa.text("UPDATE uploads SET quorum = 1"))
    bind.execute(
        sa.text(
            "UPDATE upload_parts SET backends = (SELECT uploads.backends FROM uploads"
            " WHERE uploads.upload_id = upload_parts.upload_id)"
        )
    )
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("backend")
        batch.alter_column("backends", existing_type=sa.Text(), nullable=False)
        batch.alter_column("repairs", existing_type=sa.Text(), nullable=False)
    with op.batch_alter_table("upload_parts") as batch:
        batch.alter_column("backends", existing_type=sa.Text(), nullable=False)
    saved = _saved_parts()
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("backend")
        batch.alter_column("backends", existing_type=sa.Text(), nullable=False)
        batch.alter_column("quorum", existing_type=sa.Integer(), nullable=False)
    _restore_parts(saved)


def downgrade() -> None:
    """Keep only the preferred replica's name (pending repairs and part placements are lost)."""
    for name in ("objects", "uploads"):
        op.add_column(name, sa.Column("backend", sa.Text(), nullable=True))
        _names_from_lists(name)
    with op.batch_alter_table("upload_parts") as batch:
        batch.drop_column("backends")
    saved = _saved_parts()
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("quorum")
        batch.drop_column("backends")
        batch.alter_column("backend", existing_type=sa.Text(), nullable=False)
    _restore_parts(saved)
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("repairs")
        batch.drop_column("backends")
        batch.alter_column("backend", existing_type=sa.Text(), nullable=False)
