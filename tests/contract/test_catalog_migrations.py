"""SqlCatalog on a real database: migrations, SQLite locking, and failures of the database."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, make_url, text

from blindstore.catalog.base import Bucket
from blindstore.catalog.migrate import alembic_config
from blindstore.catalog.schema import metadata
from blindstore.catalog.sql import SqlCatalog
from blindstore.errors import ServiceUnavailable
from tests.contract.catalog_contract import TENANT, make_object, setup_bucket
from tests.contract.postgres import SERVER_URL, fresh_database

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        with fresh_database() as url:
            yield url


@pytest.fixture
def empty_postgres_database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def schema_differences(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


async def test_opening_an_empty_database_migrates_it_to_the_table_metadata(
    empty_database: str,
) -> None:
    catalog = SqlCatalog(empty_database)
    await catalog.close()

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert current_revision(empty_database) == head
    assert schema_differences(empty_database) == []


async def test_reopening_a_catalog_keeps_its_rows(empty_database: str) -> None:
    catalog = SqlCatalog(empty_database)
    await setup_bucket(catalog)
    await catalog.put_object(make_object("photos", "kept"))
    await catalog.close()

    reopened = SqlCatalog(empty_database)
    try:
        assert await reopened.get_object("photos", "kept") == make_object("photos", "kept")
    finally:
        await reopened.close()


async def test_migrations_downgrade_to_nothing_and_upgrade_again(empty_database: str) -> None:
    await SqlCatalog(empty_database).close()
    engine = create_engine(empty_database)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
    finally:
        engine.dispose()

    assert schema_differences(empty_database) == []


async def test_postgres_orders_names_by_bytes_whatever_the_database_collation(
    empty_postgres_database: str,
) -> None:
    await SqlCatalog(empty_postgres_database).close()
    engine = create_engine(empty_postgres_database)
    try:
        with engine.connect() as conn:
            collations = conn.execute(
                text(
                    "SELECT table_name, column_name, collation_name FROM information_schema.columns"
                    " WHERE table_schema = 'public' AND column_name IN ('name', 'bucket', 'key')"
                    " AND table_name <> 'tenants' ORDER BY table_name, column_name"
                )
            ).all()
    finally:
        engine.dispose()

    assert [tuple(row) for row in collations] == [
        ("audit_log", "bucket", "C"),
        ("audit_log", "key", "C"),
        ("bucket_keys", "bucket", "C"),
        ("buckets", "name", "C"),
        ("objects", "bucket", "C"),
        ("objects", "key", "C"),
        ("uploads", "bucket", "C"),
        ("uploads", "key", "C"),
    ]


async def test_sqlite_catalog_uses_a_write_ahead_log_and_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    catalog = SqlCatalog(f"sqlite:///{path}")
    await catalog.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert path.stat().st_mode & 0o777 == 0o600


async def test_readers_proceed_while_a_writer_holds_the_sqlite_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "catalog.db"
    catalog = SqlCatalog(f"sqlite:///{path}", sqlite_busy_timeout=0.05)
    await setup_bucket(catalog)
    await catalog.put_object(make_object("photos", "visible"))
    other_writer = sqlite3.connect(path, isolation_level=None)
    other_writer.execute("BEGIN IMMEDIATE")
    try:
        assert await catalog.get_object("photos", "visible") is not None
        with pytest.raises(ServiceUnavailable):
            await catalog.put_object(make_object("photos", "patient-jane-doe"))
    finally:
        other_writer.execute("ROLLBACK")
        other_writer.close()

    # The cause is logged, without the statement's parameters (object keys are health data).
    assert "database is locked" in caplog.text
    assert "jane" not in caplog.text
    await catalog.put_object(make_object("photos", "patient-jane-doe"))
    await catalog.close()


async def test_an_unusable_sqlite_path_raises_service_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnavailable):
        SqlCatalog(f"sqlite:///{tmp_path / 'missing-directory' / 'catalog.db'}")


async def test_an_unreachable_postgres_raises_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailable):
        SqlCatalog("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")


async def test_a_lost_postgres_connection_raises_service_unavailable_then_recovers(
    empty_postgres_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = SqlCatalog(empty_postgres_database, pool_size=1)
    try:
        await setup_bucket(catalog)
        admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": make_url(empty_postgres_database).database},
            )
        admin.dispose()

        with caplog.at_level(logging.WARNING), pytest.raises(ServiceUnavailable):
            await catalog.get_bucket("photos")
        assert "catalog database unavailable" in caplog.text
        assert await catalog.get_bucket("photos") == Bucket("photos", TENANT.tenant_id, 1500.0)
    finally:
        await catalog.close()


def test_head_revision_constant_matches_the_migration_scripts() -> None:
    """The fast startup check (no Alembic import) must know the real head."""
    from alembic.script import ScriptDirectory

    from blindstore.catalog import migrate

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert script.get_current_head() == migrate.HEAD_REVISION


async def test_migrating_single_backend_rows_makes_one_element_replica_lists(
    empty_database: str,
) -> None:
    """Revision 0002 converts rows written by 0001, pending parts included (SQLite batch mode)."""
    engine = create_engine(empty_database)
    values = {
        "tid": TENANT.tenant_id,
        "oid": b"o" * 16,
        "uoid": b"u" * 16,
        "container": TENANT.container,
        "parts": '[[0,"00/aaaa",5,61,"e"]]',
    }
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.execute(
                text("INSERT INTO tenants VALUES (:tid, 'acme', 'k', :container, 1.0)"), values
            )
            conn.execute(text("INSERT INTO buckets VALUES ('photos', :tid, 1.0, 'r')"), values)
            conn.execute(
                text(
                    "INSERT INTO objects VALUES ('photos', 'a', :tid, :oid, 'disk-1', :container,"
                    " :parts, 5, 'e', 2.0, 'vault:v1:x', 'k', 1, '{}', '{}', '{}', '{}', :oid)"
                ),
                values,
            )
            conn.execute(
                text(
                    "INSERT INTO uploads VALUES ('u1', 'photos', 'big', :tid, :uoid, 'disk-1',"
                    " :container, 'vault:v1:x', 'k', 1, 3.0, '{}', '{}', '{}', NULL)"
                ),
                values,
            )
            conn.execute(
                text("INSERT INTO upload_parts VALUES ('u1', 1, '00/bbbb', 5, 61, 'p', 4.0, '{}')")
            )
    finally:
        engine.dispose()

    catalog = SqlCatalog(empty_database)
    try:
        record = await catalog.get_object("photos", "a")
        upload = await catalog.get_upload("u1")
        parts, _ = await catalog.list_parts("u1")
    finally:
        await catalog.close()

    assert record is not None
    assert upload is not None
    assert (record.backends, record.repairs, record.row_mac) == (("disk-1",), (), b"o" * 16)
    assert (upload.backends, upload.quorum) == (("disk-1",), 1)
    assert [(p.blob, p.backends) for p in parts] == [("00/bbbb", ("disk-1",))]
    assert schema_differences(empty_database) == []


def _rows_at_0005(url: str, *, upload_object_id: bytes) -> None:
    """A catalog at revision 0005 holding one object (id ``o…``) and one pending upload."""
    engine = create_engine(url)
    values = {
        "tid": TENANT.tenant_id,
        "oid": b"o" * 16,
        "uoid": upload_object_id,
        "parts": '[[0,"00/aaaa",5,61,"e"]]',
        "names": '["d"]',
    }
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0005")
            conn.execute(
                text(
                    "INSERT INTO tenants (tenant_id, name, key_name, container, created)"
                    " VALUES (:tid, 'acme', 'k', 'c', 1.0)"
                ),
                values,
            )
            conn.execute(text("INSERT INTO buckets VALUES ('photos', :tid, 1.0, 'r')"), values)
            conn.execute(
                text(
                    "INSERT INTO objects (bucket, key, tenant_id, object_id, backends, container,"
                    " parts, size, etag, last_modified, wrapped_dek, key_name, key_version,"
                    " headers, user_metadata, checksums, tags, row_mac, repairs)"
                    " VALUES ('photos', 'a', :tid, :oid, :names, 'c', :parts, 5, 'e', 2.0,"
                    " 'vault:v1:x', 'k', 1, '{}', '{}', '{}', '{}', :oid, '[]')"
                ),
                values,
            )
            conn.execute(
                text(
                    "INSERT INTO uploads (upload_id, bucket, key, tenant_id, object_id, backends,"
                    " container, wrapped_dek, key_name, key_version, initiated, headers,"
                    " user_metadata, tags, quorum)"
                    " VALUES ('u1', 'photos', 'big', :tid, :uoid, :names, 'c', 'vault:v1:x',"
                    " 'k', 1, 3.0, '{}', '{}', '{}', 1)"
                ),
                values,
            )
            conn.execute(
                text(
                    "INSERT INTO upload_parts (upload_id, part_number, blob, size, stored_size,"
                    " etag, last_modified, checksums, backends)"
                    " VALUES ('u1', 1, '00/bbbb', 5, 61, 'p', 4.0, '{}', :names)"
                ),
                values,
            )
    finally:
        engine.dispose()


async def test_uploads_pending_at_revision_0007_are_kept_without_a_mac(
    empty_database: str,
) -> None:
    _rows_at_0005(empty_database, upload_object_id=b"u" * 16)

    catalog = SqlCatalog(empty_database)
    try:
        upload = await catalog.get_upload("u1")
        parts, _ = await catalog.list_parts("u1")
    finally:
        await catalog.close()

    # Without a MAC the gateway refuses to continue or complete them (abort still works).
    assert upload is not None
    assert upload.row_mac == b""
    assert [(p.blob, p.row_mac) for p in parts] == [("00/bbbb", b"")]
    assert schema_differences(empty_database) == []


async def test_a_catalog_reusing_an_object_id_is_not_migrated_to_0007(
    empty_database: str,
) -> None:
    _rows_at_0005(empty_database, upload_object_id=b"o" * 16)

    with pytest.raises(RuntimeError, match="object ids are used by more than one"):
        SqlCatalog(empty_database)
    assert current_revision(empty_database) == "0005"
