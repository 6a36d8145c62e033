"""PostgreSQL databases for the tests, on the server at 127.0.0.1:5432.

``BLINDSTORE_TEST_POSTGRES`` overrides the server URL. Session databases are created with a
linguistic (ICU, English) default collation, so that a column missing ``COLLATE "C"`` would sort
keys wrongly and fail the ordering tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, make_url, text

from blindstore.catalog.schema import metadata

SERVER_URL = os.environ.get(
    "BLINDSTORE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def fresh_database(*, linguistic_collation: bool = False) -> Iterator[str]:
    """The URL of a new, empty database, dropped on exit."""
    name = f"blindstore_test_{secrets.token_hex(4)}"
    options = (
        " TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'"
        if linguistic_collation
        else ""
    )
    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}{options}"))
        yield make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def empty_tables(url: str) -> None:
    """Remove every row (the schema and its migration state stay)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            names = ", ".join(table.name for table in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names}"))
    finally:
        engine.dispose()
