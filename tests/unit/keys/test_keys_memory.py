"""The key wrapper contract, run on the in-process fake and on KeyService composed over it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.keys.service import KeyService
from tests.unit.keys.contract import BatchKeyWrapperContract, KeyWrapperContract, Rotate

pytestmark = pytest.mark.anyio


class TestInMemoryKeyWrapper(BatchKeyWrapperContract):
    @pytest.fixture
    def wrapper(self) -> InMemoryKeyWrapper:
        return InMemoryKeyWrapper()

    @pytest.fixture
    async def key_name(self, wrapper: InMemoryKeyWrapper) -> str:
        await wrapper.create_key("hgw-t-memory")
        return "hgw-t-memory"

    @pytest.fixture
    def rotate(self, wrapper: InMemoryKeyWrapper) -> Rotate:
        def rotate(key_name: str) -> None:
            wrapper.rotate_key(key_name)

        return rotate


class TestKeyServiceOverInMemory(KeyWrapperContract):
    @pytest.fixture
    def inner(self) -> InMemoryKeyWrapper:
        return InMemoryKeyWrapper()

    @pytest.fixture
    async def wrapper(self, inner: InMemoryKeyWrapper) -> AsyncIterator[KeyService]:
        async with KeyService(inner, pool_size=8) as service:
            yield service

    @pytest.fixture
    async def key_name(self, wrapper: KeyService) -> str:
        await wrapper.create_key("hgw-t-memory")
        return "hgw-t-memory"

    @pytest.fixture
    def rotate(self, wrapper: KeyService, inner: InMemoryKeyWrapper) -> Rotate:
        def rotate(key_name: str) -> None:
            inner.rotate_key(key_name)
            wrapper.pool.clear()

        return rotate
