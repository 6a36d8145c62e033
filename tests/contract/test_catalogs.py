"""The Catalog contract, run against SqlCatalog on SQLite (file and memory) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from blindstore.catalog.sql import SqlCatalog
from tests.contract.catalog_contract import CatalogContract
from tests.contract.postgres import empty_tables


class TestSqliteFileCatalog(CatalogContract):
    @pytest.fixture
    async def catalog(self, tmp_path: Path) -> AsyncIterator[SqlCatalog]:
        catalog = SqlCatalog(f"sqlite:///{tmp_path / 'catalog.db'}")
        yield catalog
        await catalog.close()


class TestSqliteMemoryCatalog(CatalogContract):
    @pytest.fixture
    async def catalog(self) -> AsyncIterator[SqlCatalog]:
        catalog = SqlCatalog("sqlite://")
        yield catalog
        await catalog.close()


class TestPostgresCatalog(CatalogContract):
    @pytest.fixture
    async def catalog(self, postgres_url: str) -> AsyncIterator[SqlCatalog]:
        catalog = SqlCatalog(postgres_url)
        yield catalog
        await catalog.close()
        empty_tables(postgres_url)
