"""The Catalog contract, run against SqlCatalog on SQLite (file and memory) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from blindstore.catalog.sql import SqlCatalog
from tests.contract.catalog_contract import CatalogContract
from tests.contract.catalog_tenancy_contract import TenancyContract
from tests.contract.postgres import empty_tables


class TestSqliteFileCatalog(CatalogContract, TenancyContract):
    @pytest.fixture
    async def catalog(self, tmp_path: Path) -> AsyncIterator[SqlCatalog]:
        catalog = SqlCatalog(f"sqlite:///{tmp_path / 'catalog.db'}")
        yield catalog
        await catalog.close()


class TestSqliteMemoryCatalog(CatalogContract, TenancyContract):
    @pytest.fixture
    async def catalog(self) -> AsyncIterator[SqlCatalog]:
        catalog = SqlCatalog("sqlite://")
        yield catalog
        await catalog.close()


class TestPostgresCatalog(CatalogContract, TenancyContract):
    @pytest.fixture
    async def catalog(self, postgres_url: str) -> AsyncIterator[SqlCatalog]:
        catalog = SqlCatalog(postgres_url)
        yield catalog
        await catalog.close()
        empty_tables(postgres_url)


@pytest.mark.anyio
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_two_gateways_appending_to_one_audit_log_never_fork_the_chain(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    import anyio

    from blindstore.audit.chain import verify
    from tests.contract.catalog_contract import audit_event

    url = (
        f"sqlite:///{tmp_path / 'catalog.db'}"
        if database == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    first, second = SqlCatalog(url), SqlCatalog(url)
    try:

        async def append(catalog: SqlCatalog, n: int) -> None:
            await catalog.append_audit([audit_event(n), audit_event(n + 1000)])

        async with anyio.create_task_group() as tg:
            for n in range(1, 31):
                tg.start_soon(append, first if n % 2 else second, n)

        stored = await first.audit_records(limit=1000)
        assert [r.seq for r in stored] == list(range(1, 61))
        assert verify(stored, [], {}) == []
    finally:
        await first.close()
        await second.close()
        if database == "postgresql":
            empty_tables(url)
