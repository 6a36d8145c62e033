"""Fixtures shared by the contract suites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.postgres import fresh_database


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database for the session (linguistic default collation), dropped after."""
    with fresh_database(linguistic_collation=True) as url:
        yield url
