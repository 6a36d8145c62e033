"""The Backend contract against GcsBackend on gcp-storage-emulator, then what is GCS-specific.

Every test gets buckets of its own (a fresh ``bucket_prefix``), created by the backend's first
put and removed afterwards. ``artifacts`` lists the objects of those buckets: an unfinished
resumable upload session is not an object (GCS drops it after a week), and the emulator, which
cannot cancel one, keeps its bytes outside any bucket.
"""

from __future__ import annotations

import hashlib
import secrets
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from pydantic import ValidationError

from blindstore.backends.gcs import CONTENT_TYPE, GcsBackend, GcsBackendSettings, _Parcel
from blindstore.devtools.gcs_emulator import GcsEmulator, free_port
from blindstore.errors import BackendUnavailable, BlindstoreError, BlobNotFound, ConfigError
from tests.contract.backend_contract import (
    CONTAINER,
    Artifacts,
    BackendContract,
    blob_id,
    chunked,
    listing,
    read_all,
)
from tests.services.gcs_emulator import (  # noqa: F401
    PROJECT,
    emulator_client,
    gcs_emulator,
    held_objects,
    remove_buckets,
)

MiB = 1024 * 1024
#: Pieces of 1 MiB: the contract's 2.5-4 MiB blobs then go through resumable sessions.
CHUNK = 1 * MiB


def settings(emulator: GcsEmulator, prefix: str) -> GcsBackendSettings:
    return GcsBackendSettings(
        endpoint_url=emulator.endpoint_url, project=PROJECT, bucket_prefix=prefix, chunk_size=CHUNK
    )


def session_requests(emulator: GcsEmulator, method: str, bucket: str) -> int:
    """Requests the emulator logged on resumable sessions of ``bucket`` with ``method``."""
    marker = f'"{method} /upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id='
    return emulator.log_path.read_text(encoding="utf-8", errors="replace").count(marker)


@pytest.fixture
def bucket_prefix() -> str:
    return f"t{secrets.token_hex(4)}-"


@pytest.fixture
async def gcs_backend(
    gcs_emulator: GcsEmulator,  # noqa: F811
    bucket_prefix: str,
) -> AsyncIterator[GcsBackend]:
    backend = GcsBackend(settings(gcs_emulator, bucket_prefix))
    yield backend
    await backend.close()
    # The emulator slows down as its single metadata file grows: leave nothing behind.
    remove_buckets(emulator_client(gcs_emulator), bucket_prefix)


class TestGcsBackend(BackendContract):
    @pytest.fixture
    def backend(self, gcs_backend: GcsBackend) -> GcsBackend:
        return gcs_backend

    @pytest.fixture
    def artifacts(
        self,
        gcs_emulator: GcsEmulator,  # noqa: F811
        bucket_prefix: str,
    ) -> Artifacts:
        client = emulator_client(gcs_emulator)

        async def held() -> list[str]:
            return held_objects(client, bucket_prefix)

        return held


def pieces(total: int, size: int = 65536) -> Iterator[bytes]:
    """``total`` bytes of a repeating pattern, in ``size`` chunks."""
    pattern = bytes(range(256)) * (size // 256)
    for offset in range(0, total, size):
        yield pattern[: min(size, total - offset)]


@pytest.mark.anyio
class TestGcsSpecifics:
    async def test_a_blob_larger_than_a_chunk_goes_up_in_chunk_sized_session_pieces(
        self,
        gcs_backend: GcsBackend,
        gcs_emulator: GcsEmulator,  # noqa: F811
        bucket_prefix: str,
    ) -> None:
        data = b"".join(pieces(3 * MiB + 5))

        stored = await gcs_backend.put(CONTAINER, blob_id(1), chunked(*pieces(len(data))))

        assert stored == len(data)
        # Three full pieces, then the five last bytes with the total: four session requests.
        assert session_requests(gcs_emulator, "PUT", bucket_prefix + CONTAINER) == 4
        assert await read_all(gcs_backend, blob_id(1)) == data
        assert (
            await read_all(gcs_backend, blob_id(1), CHUNK - 2, 2 * CHUNK + 2)
            == (data[CHUNK - 2 : 2 * CHUNK + 2])
        )

    async def test_a_blob_of_one_chunk_at_most_is_one_upload_request(
        self,
        gcs_backend: GcsBackend,
        gcs_emulator: GcsEmulator,  # noqa: F811
        bucket_prefix: str,
    ) -> None:
        data = b"".join(pieces(CHUNK))

        assert await gcs_backend.put(CONTAINER, blob_id(1), chunked(*pieces(CHUNK))) == CHUNK

        assert session_requests(gcs_emulator, "PUT", bucket_prefix + CONTAINER) == 0
        assert await read_all(gcs_backend, blob_id(1)) == data

    async def test_streamed_put_and_get_hold_bounded_memory(self, gcs_backend: GcsBackend) -> None:
        template = bytes(range(256)) * 256
        count = 256  # 16 MiB in 64 KiB chunks: 16 pieces (the emulator rewrites a session's
        # bytes on every piece, so more would only measure the emulator)

        def chunk(n: int) -> bytes:
            return n.to_bytes(4, "big") + template[4:]  # a new object each time, as a sealer's

        async def stream() -> AsyncIterator[bytes]:
            for n in range(count):
                yield chunk(n)

        expected = hashlib.sha256()
        for n in range(count):
            expected.update(chunk(n))
        tracemalloc.start()
        try:
            stored = await gcs_backend.put(CONTAINER, blob_id(1), stream())
            _, put_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            digest = hashlib.sha256()
            async for block in gcs_backend.get(CONTAINER, blob_id(1)):
                digest.update(block)
            _, get_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert stored == count * len(template)
        assert digest.digest() == expected.digest()
        # A piece being cut from the chunks that brought it; a read and its copies.
        assert put_peak < 3 * CHUNK
        assert get_peak < 3 * CHUNK

    @pytest.mark.parametrize("how", ["the body fails", "the put is cancelled"])
    async def test_an_interrupted_put_leaves_no_object_and_cancels_its_session(
        self,
        gcs_backend: GcsBackend,
        gcs_emulator: GcsEmulator,  # noqa: F811
        bucket_prefix: str,
        how: str,
    ) -> None:
        sent = anyio.Event()

        async def body() -> AsyncIterator[bytes]:
            for piece in pieces(5 * MiB // 2):  # two pieces sent, half a piece pending
                await anyio.lowlevel.checkpoint()
                yield piece
            sent.set()
            if how == "the body fails":
                raise ConnectionResetError
            await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            if how == "the body fails":
                with pytest.raises(ConnectionResetError):
                    await gcs_backend.put(CONTAINER, blob_id(1), body())
            else:
                tg.start_soon(gcs_backend.put, CONTAINER, blob_id(1), body())
                await sent.wait()
                tg.cancel_scope.cancel()

        bucket = bucket_prefix + CONTAINER
        assert session_requests(gcs_emulator, "PUT", bucket) == 2
        # The emulator answers 501 (it cannot cancel): the request is what the backend owes.
        assert session_requests(gcs_emulator, "DELETE", bucket) == 1
        with pytest.raises(BlobNotFound):
            await gcs_backend.size(CONTAINER, blob_id(1))
        assert held_objects(emulator_client(gcs_emulator), bucket_prefix) == []

    async def test_a_piece_whose_answer_was_lost_is_resumed_not_sent_again(
        self,
        gcs_backend: GcsBackend,
        gcs_emulator: GcsEmulator,  # noqa: F811
        bucket_prefix: str,
    ) -> None:
        # Losing an answer on purpose takes the backend's session object: its first attempt at
        # the second piece is made by hand, and its answer dropped.
        bucket = bucket_prefix + CONTAINER
        first, second, last = b"\x01" * CHUNK, b"\x02" * CHUNK, b"tail"
        session = await gcs_backend._call(gcs_backend._open_session, bucket, blob_id(1))
        await gcs_backend._call(session.send, _Parcel(first), 0, False)
        lost = gcs_backend._http.put(
            session._url, data=second, headers={"Content-Range": f"bytes {CHUNK}-{2 * CHUNK - 1}/*"}
        )
        assert lost.status_code == 308
        session._unsure = True  # what a failed attempt leaves behind

        await gcs_backend._call(session.send, _Parcel(second), CHUNK, False)
        await gcs_backend._call(session.send, _Parcel(last), 2 * CHUNK, True)

        # The retry asked where the session stood instead of sending the piece again (the
        # emulator refuses a piece that does not start where it stands).
        assert session_requests(gcs_emulator, "PUT", bucket) == 4
        assert await read_all(gcs_backend, blob_id(1)) == first + second + last

    async def test_blobs_are_octet_stream_without_metadata(
        self,
        gcs_backend: GcsBackend,
        gcs_emulator: GcsEmulator,  # noqa: F811
        bucket_prefix: str,
    ) -> None:
        await gcs_backend.put(CONTAINER, blob_id(1), chunked(b"small"))
        await gcs_backend.put(CONTAINER, blob_id(2), chunked(*pieces(2 * MiB + 1)))

        client = emulator_client(gcs_emulator)
        found = list(client.list_blobs(bucket_prefix + CONTAINER))
        assert [blob.name for blob in found] == [blob_id(1), blob_id(2)]
        for blob in found:
            assert blob.content_type == CONTENT_TYPE
            assert not blob.metadata
            assert blob.content_disposition is None
            assert blob.content_encoding is None

    async def test_concurrent_first_puts_both_create_the_bucket(
        self,
        gcs_emulator: GcsEmulator,  # noqa: F811
        bucket_prefix: str,
    ) -> None:
        first = GcsBackend(settings(gcs_emulator, bucket_prefix))
        second = GcsBackend(settings(gcs_emulator, bucket_prefix))
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(first.put, CONTAINER, blob_id(1), chunked(b"one"))
                tg.start_soon(second.put, CONTAINER, blob_id(2), chunked(*pieces(2 * MiB)))

            assert [info.blob for info in await listing(first)] == [blob_id(1), blob_id(2)]
        finally:
            await first.close()
            await second.close()
            remove_buckets(emulator_client(gcs_emulator), bucket_prefix)

    async def test_objects_not_named_like_blobs_are_not_listed(
        self,
        gcs_backend: GcsBackend,
        gcs_emulator: GcsEmulator,  # noqa: F811
        bucket_prefix: str,
    ) -> None:
        await gcs_backend.put(CONTAINER, blob_id(1), chunked(b"ours"))
        bucket = emulator_client(gcs_emulator).bucket(bucket_prefix + CONTAINER)
        bucket.blob("README.txt").upload_from_string(b"someone else's")
        bucket.blob("00/UPPERCASEISNOTOURS12345").upload_from_string(b"x")

        assert [info.blob for info in await listing(gcs_backend)] == [blob_id(1)]

    async def test_an_unreachable_endpoint_is_backend_unavailable(self, tmp_path: Path) -> None:
        dead = GcsBackendSettings(
            endpoint_url=f"http://127.0.0.1:{free_port()}", connect_timeout=1.0, chunk_size=CHUNK
        )
        backend = GcsBackend(dead)
        try:
            with pytest.raises(BackendUnavailable):
                await backend.put(CONTAINER, blob_id(1), chunked(b"small"))
            with pytest.raises(BackendUnavailable):
                await backend.put(CONTAINER, blob_id(1), chunked(*pieces(2 * MiB)))
            with pytest.raises(BackendUnavailable):
                await read_all(backend, blob_id(1))
            with pytest.raises(BackendUnavailable):
                await read_all(backend, blob_id(1), 3, 3)
            with pytest.raises(BackendUnavailable):
                await backend.size(CONTAINER, blob_id(1))
            with pytest.raises(BackendUnavailable):
                await backend.delete(CONTAINER, blob_id(1))
            with pytest.raises(BackendUnavailable):
                await listing(backend)
        finally:
            await backend.close()

    async def test_a_container_too_long_with_the_prefix_never_reaches_storage(
        self,
        gcs_emulator: GcsEmulator,  # noqa: F811
    ) -> None:
        backend = GcsBackend(settings(gcs_emulator, "p" * 34))
        try:
            with pytest.raises(BlindstoreError, match="Invalid container name"):
                await backend.put("bs-" + "a" * 28, blob_id(1), chunked(b"x"))
        finally:
            await backend.close()


class TestGcsBackendSettings:
    def test_chunk_size_must_be_a_multiple_of_256_kib(self) -> None:
        with pytest.raises(ValidationError, match="multiple of 262144"):
            GcsBackendSettings(endpoint_url="http://127.0.0.1:1", chunk_size=1_000_000)

    def test_anonymous_access_needs_an_emulator_endpoint(self) -> None:
        with pytest.raises(ValidationError, match="credentials_file or use_default_credentials"):
            GcsBackendSettings(project="p")

    def test_one_way_to_authenticate_at_a_time(self, tmp_path: Path) -> None:
        with pytest.raises(ValidationError, match="not both"):
            GcsBackendSettings(credentials_file=tmp_path / "key.json", use_default_credentials=True)

    @pytest.mark.parametrize("prefix", ["google-", "goog-", "Upper-", "-dash", "a.b-"])
    def test_bucket_prefixes_gcs_would_refuse_are_refused(self, prefix: str) -> None:
        with pytest.raises(ValidationError):
            GcsBackendSettings(endpoint_url="http://127.0.0.1:1", bucket_prefix=prefix)

    def test_an_unreadable_credentials_file_is_a_config_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"missing\.json"):
            GcsBackend(GcsBackendSettings(credentials_file=tmp_path / "missing.json"))

    def test_a_malformed_credentials_file_is_a_config_error(self, tmp_path: Path) -> None:
        key = tmp_path / "key.json"
        key.write_text('{"type": "service_account"}', encoding="utf-8")
        with pytest.raises(ConfigError, match="no usable GCS credentials"):
            GcsBackend(GcsBackendSettings(credentials_file=key))
