"""MemoryBackend specifics (the shared behaviours are in tests/contract)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from blindstore.backends.memory import MemoryBackend

pytestmark = pytest.mark.anyio


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_modification_times_come_from_the_injected_clock() -> None:
    backend = MemoryBackend(clock=lambda: 1234.5)

    await backend.put("bs-unit", "ab/abcdefghijklmnopqrstuvwxyz", chunks(b"abc"))

    [info] = [info async for info in backend.list("bs-unit")]
    assert info.modified == 1234.5


async def test_instances_do_not_share_blobs() -> None:
    first, second = MemoryBackend(), MemoryBackend()

    await first.put("bs-unit", "ab/abcdefghijklmnopqrstuvwxyz", chunks(b"abc"))

    assert [info async for info in second.list("bs-unit")] == []
