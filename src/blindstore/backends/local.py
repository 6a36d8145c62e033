"""The local filesystem backend: ``<root>/<container>/<shard>/<id>``, ciphertext only.

Writes go to a ``.tmp-`` file in the blob's own directory, are fsynced, renamed over the blob
name and the directory is fsynced: a blob is either absent or complete, even after a crash. The
temporary files a crash leaves behind are never listed; ``remove_stale_temp`` deletes them.

Every file operation runs in a worker thread, batched so that a small blob costs one thread hop
to write and one to read. Names are checked against ``ids`` before they reach the filesystem.
Directories are created ``0700`` and files ``0600``: they hold nothing but ciphertext, but
nobody else on the host needs to see even their number or sizes.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Final, TypeVar, TypeVarTuple

import anyio
import anyio.to_thread

from blindstore.backends.base import BlobInfo
from blindstore.backends.ids import (
    BLOB_PATTERN,
    check_blob,
    check_container,
    check_range,
    new_blob_id,
)
from blindstore.errors import BackendUnavailable, BlindstoreError, BlobNotFound

_log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

TEMP_PREFIX: Final = ".tmp-"
_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
_WRITE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
_READ_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
_SHARD_LENGTH: Final = 2

# The name ``list`` is taken inside LocalBackend by the Backend method.
_Paths = list[Path]


class LocalBackend:
    """Blobs as files under ``root``.

    ``write_buffer``: bytes of a put held in memory before they are written (a blob that fits
    is written in one thread hop). ``read_size``: the largest read, and chunk ``get`` yields.
    Reads of at most ``inline_read`` bytes run on the event loop (a page-cache read costs less
    than the thread hop around it).
    """

    def __init__(
        self,
        root: Path,
        name: str = "local",
        *,
        write_buffer: int = 1 << 20,
        read_size: int = 1 << 20,
        inline_read: int = 64 << 10,
    ) -> None:
        self.name = name
        self.root = Path(root).absolute()
        self._write_buffer = write_buffer
        self._read_size = read_size
        self._inline_read = inline_read

    async def put(self, container: str, blob: str, chunks: AsyncIterator[bytes]) -> int:
        """Store ``chunks`` as one blob, atomically; return the number of bytes stored."""
        final = self._path(container, blob)
        buffered: list[bytes] = []
        pending = 0
        total = 0
        temp: _TempFile | None = None
        try:
            async for chunk in chunks:
                buffered.append(chunk)
                pending += len(chunk)
                if pending < self._write_buffer:
                    continue
                data = b"".join(buffered)
                buffered.clear()
                total += pending
                pending = 0
                if temp is None:
                    temp = await _in_thread(_TempFile.create, self.root, final, data)
                else:
                    await _in_thread(temp.write, data)
            data = b"".join(buffered)
            total += pending
            if temp is None:
                await _in_thread(_write_whole, self.root, final, data)
            else:
                finishing, temp = temp, None
                await _in_thread(finishing.finish, data)
            return total
        except BaseException:
            if temp is not None:
                # Runs even when the put is cancelled: no partial file may outlive it.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(temp.discard)
            raise

    async def get(
        self, container: str, blob: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` of the blob in reads of at most ``read_size``."""
        check_range(start, end)
        path = self._path(container, blob)
        if end is not None and end - start <= self._inline_read:
            # A small read from the page cache costs less than the thread hop around it.
            with _map_os_errors():
                reader = _Reader.open(path, start, end, self._read_size)
        else:
            reader = await _in_thread(_Reader.open, path, start, end, self._read_size)
        try:
            if reader.first:
                yield reader.first
            while not reader.done:
                yield await _in_thread(reader.read_next)
        finally:
            reader.close()

    async def size(self, container: str, blob: str) -> int:
        """Size in bytes of a stored blob; BlobNotFound if absent."""
        return await _in_thread(_size, self._path(container, blob))

    async def delete(self, container: str, blob: str) -> None:
        """Remove a blob; a missing blob is not an error."""
        await _in_thread(_unlink_if_present, self._path(container, blob))

    async def list(self, container: str) -> AsyncIterator[BlobInfo]:
        """Every complete blob in ``container``, by id (one thread hop per shard directory)."""
        check_container(container)
        directory = self.root / container
        for shard in await _in_thread(_shards, directory):
            for info in await _in_thread(_scan_shard, directory, container, shard):
                yield info

    async def list_stale_temp(self, older_than: float) -> _Paths:
        """Temporary files (abandoned by a crash) last written before ``older_than`` (epoch s)."""
        return await _in_thread(_stale_temp, self.root, older_than)

    async def remove_stale_temp(self, older_than: float) -> int:
        """Delete the temporary files ``list_stale_temp`` finds; return how many were removed."""

        def remove() -> int:
            stale = _stale_temp(self.root, older_than)
            for path in stale:
                _unlink_if_present(path)
            return len(stale)

        return await _in_thread(remove)

    async def close(self) -> None:
        """Nothing to release: no file stays open between calls."""

    def _path(self, container: str, blob: str) -> Path:
        check_container(container)
        check_blob(blob)
        return self.root / container / blob


async def _in_thread(work: Callable[[*Ts], T], *args: *Ts) -> T:
    """Run blocking file I/O in a worker thread, translating OS errors."""
    with _map_os_errors():
        return await anyio.to_thread.run_sync(work, *args)


@contextmanager
def _map_os_errors() -> Iterator[None]:
    try:
        yield
    except BlindstoreError:
        raise
    except OSError as exc:
        # Disk full, permissions, I/O error: the cause goes to the log, never to the client.
        _log.error("local backend I/O failed", exc_info=exc)
        raise BackendUnavailable() from exc


class _TempFile:
    """A blob being written: an open ``.tmp-`` file next to its final name."""

    def __init__(self, fd: int, path: Path, final: Path) -> None:
        self.fd: int | None = fd
        self.path = path
        self.final = final

    @classmethod
    def create(cls, root: Path, final: Path, data: bytes) -> _TempFile:
        """Create the temporary file (and missing directories) holding ``data``."""
        path = final.with_name(f"{TEMP_PREFIX}{final.name}-{secrets.token_hex(8)}")
        try:
            fd = os.open(path, _WRITE_FLAGS, _FILE_MODE)
        except FileNotFoundError:
            _make_directories(root, final.parent)
            fd = os.open(path, _WRITE_FLAGS, _FILE_MODE)
        temp = cls(fd, path, final)
        try:
            temp.write(data)
        except BaseException:
            temp.discard()
            raise
        return temp

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        assert self.fd is not None
        _write_all(self.fd, data)

    def finish(self, data: bytes) -> None:
        """Append ``data``, make the file durable and give it its final name."""
        try:
            self.write(data)
            assert self.fd is not None
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None
            os.replace(self.path, self.final)
        except BaseException:
            self.discard()
            raise
        _fsync_directory(self.final.parent)

    def discard(self) -> None:
        """Close and remove the temporary file."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
        _unlink_if_present(self.path)


def _write_whole(root: Path, final: Path, data: bytes) -> None:
    _TempFile.create(root, final, b"").finish(data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _Reader:
    """An open blob and the part of the requested range still to read."""

    def __init__(self, fd: int | None, offset: int, stop: int, read_size: int) -> None:
        self.fd = fd
        self.offset = offset
        self.stop = stop
        self.read_size = read_size
        self.first = b""

    @property
    def done(self) -> bool:
        return self.fd is None or self.offset >= self.stop

    @classmethod
    def open(cls, path: Path, start: int, end: int | None, read_size: int) -> _Reader:
        """Open the blob and read the first block; close it at once if that was all."""
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            raise BlobNotFound() from None
        try:
            # The file is replaced, never rewritten in place: its size cannot change under us.
            size = os.fstat(fd).st_size
            stop = size if end is None else min(end, size)
            reader = cls(fd, start, stop, read_size)
            if not reader.done:
                reader.first = reader.read_next()
            if reader.done:
                reader.close()
        except BaseException:
            os.close(fd)
            raise
        return reader

    def read_next(self) -> bytes:
        """The next block of the range."""
        assert self.fd is not None
        data = os.pread(self.fd, min(self.read_size, self.stop - self.offset), self.offset)
        if not data:
            raise BlindstoreError("A blob was truncated while being read.")
        self.offset += len(data)
        return data

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


def _size(path: Path) -> int:
    try:
        return os.stat(path, follow_symlinks=False).st_size
    except FileNotFoundError:
        raise BlobNotFound() from None


def _unlink_if_present(path: Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


def _make_directories(root: Path, shard_directory: Path) -> None:
    """Create root, container and shard directories as needed, durably."""
    os.makedirs(root, mode=_DIR_MODE, exist_ok=True)
    container_directory = shard_directory.parent
    for directory in (container_directory, shard_directory):
        try:
            os.mkdir(directory, _DIR_MODE)
        except FileExistsError:
            continue
        _fsync_directory(directory.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _shards(container_directory: Path) -> list[str]:
    try:
        with os.scandir(container_directory) as entries:
            return sorted(
                entry.name
                for entry in entries
                if len(entry.name) == _SHARD_LENGTH and entry.is_dir(follow_symlinks=False)
            )
    except FileNotFoundError:
        return []


def _scan_shard(container_directory: Path, container: str, shard: str) -> list[BlobInfo]:
    found: list[BlobInfo] = []
    try:
        entries = os.scandir(container_directory / shard)
    except FileNotFoundError:
        return found  # removed since the container was read
    with entries:
        for entry in entries:
            blob = f"{shard}/{entry.name}"
            if entry.name.startswith(TEMP_PREFIX) or BLOB_PATTERN.fullmatch(blob) is None:
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted since the directory was read
            found.append(BlobInfo(container, blob, stat.st_size, stat.st_mtime))
    found.sort(key=lambda info: info.blob)
    return found


def _stale_temp(root: Path, older_than: float) -> list[Path]:
    stale: list[Path] = []
    for temp in root.glob(f"*/*/{TEMP_PREFIX}*"):
        try:
            modified = temp.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue  # finished or discarded meanwhile
        if modified < older_than:
            stale.append(temp)
    return sorted(stale)


__all__ = ["TEMP_PREFIX", "LocalBackend", "new_blob_id"]
