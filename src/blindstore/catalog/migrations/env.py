"""Alembic environment for the catalog.

At runtime ``blindstore.catalog.migrate.upgrade`` passes an open connection in
``config.attributes["connection"]``. Developers can also run the ``alembic`` command with the
``alembic.ini`` next to this directory and the database in ``BLINDSTORE_CATALOG_URL`` (or
``-x url=...``).
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine

from blindstore.catalog.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place: later revisions move tables in batches.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _developer_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "BLINDSTORE_CATALOG_URL"
    )
    if not url:
        raise SystemExit("set BLINDSTORE_CATALOG_URL or pass -x url=... to alembic")
    return url


def _main() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    if context.config.config_file_name is not None:
        fileConfig(context.config.config_file_name)
    engine = create_engine(_developer_url())
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


_main()
