"""The Backend contract, run against every backend that needs no external service."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blindstore.backends.local import LocalBackend
from blindstore.backends.memory import MemoryBackend
from tests.contract.backend_contract import (
    CONTAINER,
    OTHER_CONTAINER,
    Artifacts,
    BackendContract,
    StreamingBackendContract,
)


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def backend(self) -> MemoryBackend:
        return MemoryBackend()

    @pytest.fixture
    def artifacts(self, backend: MemoryBackend) -> Artifacts:
        # A MemoryBackend holds complete blobs only: its listings are the whole truth.
        async def held() -> list[str]:
            return sorted(
                [f"{info.container}/{info.blob}" async for info in backend.list(CONTAINER)]
                + [f"{info.container}/{info.blob}" async for info in backend.list(OTHER_CONTAINER)]
            )

        return held


class TestLocalBackend(BackendContract, StreamingBackendContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> LocalBackend:
        return LocalBackend(tmp_path / "blobs")

    @pytest.fixture
    def artifacts(self, backend: LocalBackend) -> Artifacts:
        async def held() -> list[str]:
            return sorted(
                os.path.relpath(os.path.join(directory, name), backend.root)
                for directory, _, names in os.walk(backend.root)
                for name in names
            )

        return held
