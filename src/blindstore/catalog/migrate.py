"""Bring a catalog database to the current schema with the migrations shipped in the package."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")

#: The newest revision in ``migrations/versions``; a test keeps it equal to Alembic's head.
HEAD_REVISION = "0010"

#: PostgreSQL advisory lock id held while migrating, so that gateways starting together do not
#: run the same migration twice. Any constant works; this one spells "blnd".
_POSTGRES_MIGRATION_LOCK = 0x626C6E64


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code (no alembic.ini), optionally bound to a connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def is_current(connection: Connection) -> bool:
    """Whether the database is already at ``HEAD_REVISION`` (checked without Alembic)."""
    if not inspect(connection).has_table("alembic_version"):
        return False
    versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
    return list(versions) == [HEAD_REVISION]


def upgrade(connection: Connection) -> None:
    """Apply every pending migration inside the caller's transaction on ``connection``.

    Alembic is imported only when there is something to do: it costs ~10 MiB of resident memory
    and most starts find the schema current.
    """
    if is_current(connection):
        return
    from alembic import command

    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _POSTGRES_MIGRATION_LOCK}
        )
    command.upgrade(alembic_config(connection), "head")
