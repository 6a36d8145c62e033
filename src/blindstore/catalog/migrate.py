"""Bring a catalog database to the current schema with the migrations shipped in the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

MIGRATIONS = Path(__file__).with_name("migrations")

#: PostgreSQL advisory lock id held while migrating, so that gateways starting together do not
#: run the same migration twice. Any constant works; this one spells "blnd".
_POSTGRES_MIGRATION_LOCK = 0x626C6E64


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code (no alembic.ini), optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    """Apply every pending migration inside the caller's transaction on ``connection``."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _POSTGRES_MIGRATION_LOCK}
        )
    command.upgrade(alembic_config(connection), "head")
