"""LocalBackend specifics: on-disk layout, permissions, leftovers of crashes, OS failures."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from blindstore.backends.local import TEMP_PREFIX, LocalBackend
from blindstore.errors import BackendUnavailable, BlobNotFound

pytestmark = pytest.mark.anyio

CONTAINER = "bs-unit"
BLOB = "ab/abcdefghijklmnopqrstuvwxyz"
OTHER_BLOB = "cd/abcdefghijklmnopqrstuvwxyz"


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_blobs_are_files_under_container_and_shard(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "root")

    await backend.put(CONTAINER, BLOB, chunks(b"ciphertext"))

    path = tmp_path / "root" / CONTAINER / "ab" / "abcdefghijklmnopqrstuvwxyz"
    assert path.read_bytes() == b"ciphertext"
    assert os.listdir(path.parent) == [path.name]


async def test_files_are_private_to_the_owner(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "root")

    await backend.put(CONTAINER, BLOB, chunks(b"x"))

    assert mode(tmp_path / "root" / CONTAINER) == 0o700
    assert mode(tmp_path / "root" / CONTAINER / "ab") == 0o700
    assert mode(tmp_path / "root" / CONTAINER / BLOB) == 0o600


async def test_temporary_files_are_never_listed(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    await backend.put(CONTAINER, BLOB, chunks(b"done"))
    (tmp_path / CONTAINER / "ab" / f"{TEMP_PREFIX}xyz-123").write_bytes(b"partial")

    listed = [info.blob async for info in backend.list(CONTAINER)]

    assert listed == [BLOB]


async def test_foreign_files_in_the_tree_are_not_blobs(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    await backend.put(CONTAINER, BLOB, chunks(b"done"))
    (tmp_path / CONTAINER / "README").write_text("operator note")
    (tmp_path / CONTAINER / "ab" / "NOT-A-BLOB").write_text("?")
    (tmp_path / CONTAINER / "ab" / "zzzzzzzzzzzzzzzzzzzzzzzzzz").mkdir()
    (tmp_path / CONTAINER / "ab" / "yyyyyyyyyyyyyyyyyyyyyyyyyy").symlink_to("/etc/hostname")

    listed = [info.blob async for info in backend.list(CONTAINER)]

    assert listed == [BLOB]


async def test_listing_reports_size_and_modification_time(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    await backend.put(CONTAINER, BLOB, chunks(b"12345"))
    os.utime(tmp_path / CONTAINER / BLOB, (1_700_000_000, 1_700_000_000))

    [info] = [info async for info in backend.list(CONTAINER)]

    assert (info.container, info.blob, info.size, info.modified) == (
        CONTAINER,
        BLOB,
        5,
        1_700_000_000,
    )


async def test_stale_temporary_files_are_found_and_removed(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    await backend.put(CONTAINER, BLOB, chunks(b"kept"))
    shard = tmp_path / CONTAINER / "ab"
    old = shard / f"{TEMP_PREFIX}abcdefghijklmnopqrstuvwxyz-0001"
    fresh = shard / f"{TEMP_PREFIX}abcdefghijklmnopqrstuvwxyz-0002"
    for path, written in ((old, 1000.0), (fresh, 5000.0)):
        path.write_bytes(b"partial")
        os.utime(path, (written, written))

    assert await backend.list_stale_temp(older_than=3000.0) == [old]
    assert await backend.remove_stale_temp(older_than=3000.0) == 1

    assert not old.exists()
    assert fresh.exists()
    assert await backend.size(CONTAINER, BLOB) == 4


async def test_an_unwritable_root_raises_backend_unavailable_and_logs_the_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    backend = LocalBackend(not_a_directory / "root")

    with caplog.at_level(logging.ERROR), pytest.raises(BackendUnavailable) as raised:
        await backend.put(CONTAINER, BLOB, chunks(b"x"))

    assert "Not a directory" not in raised.value.public_message
    assert "Not a directory" in caplog.text


async def test_reading_a_directory_in_place_of_a_blob_raises_backend_unavailable(
    tmp_path: Path,
) -> None:
    backend = LocalBackend(tmp_path)
    (tmp_path / CONTAINER / BLOB).mkdir(parents=True)

    with pytest.raises(BackendUnavailable):
        async for _ in backend.get(CONTAINER, BLOB, 0, 10):
            pass


async def test_a_symlinked_blob_is_not_followed(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    secret = tmp_path / "outside"
    secret.write_bytes(b"not ciphertext")
    (tmp_path / CONTAINER / "ab").mkdir(parents=True)
    (tmp_path / CONTAINER / BLOB).symlink_to(secret)

    with pytest.raises(BackendUnavailable):
        async for _ in backend.get(CONTAINER, BLOB):
            pass


async def test_get_reads_in_blocks_of_read_size(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, read_size=4)
    await backend.put(CONTAINER, BLOB, chunks(b"0123456789"))

    blocks = [block async for block in backend.get(CONTAINER, BLOB, 1, 9)]

    assert blocks == [b"1234", b"5678"]


async def test_a_get_abandoned_midway_releases_its_file(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, read_size=2)
    await backend.put(CONTAINER, BLOB, chunks(b"0123456789"))
    open_before = len(os.listdir("/proc/self/fd"))

    reader = backend.get(CONTAINER, BLOB)
    assert await anext(reader) == b"01"
    await reader.aclose()  # type: ignore[attr-defined]

    assert len(os.listdir("/proc/self/fd")) == open_before


async def test_deleting_the_last_blob_keeps_the_directories(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    await backend.put(CONTAINER, BLOB, chunks(b"x"))
    await backend.put(CONTAINER, OTHER_BLOB, chunks(b"y"))

    await backend.delete(CONTAINER, BLOB)

    with pytest.raises(BlobNotFound):
        await backend.size(CONTAINER, BLOB)
    assert [info.blob async for info in backend.list(CONTAINER)] == [OTHER_BLOB]
