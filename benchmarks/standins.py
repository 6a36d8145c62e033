"""The storage stand-ins ``bench_backends.py`` measures, and a direct client for each.

``start_standin(kind, workdir)`` starts one stand-in with the starter the tests use
(``blindstore.devtools``) and returns a ``StandIn``: the ``storage`` section that makes a
gateway store its blobs there, the stand-in's pid (for its CPU) and a ``Direct`` client that
moves the same bytes to it with the stand-in's own SDK and that SDK's defaults, as an
application would without the gateway. ``S3Direct`` doubles as the client of the gateway itself
(same boto3 configuration, ``servers.CLIENT_CONFIG``). ``StandIn.stop()`` ends what it started.

Every GET is read as a stream and compared with what was sent as it arrives (``Expect``), so a
wrong byte fails the run without a second pass over the data.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from meters import MiB
from servers import s3_client

#: The stand-ins, in the order they run; the name is the one ``--backends`` takes.
KINDS: dict[str, str] = {
    "local": "local disk",
    "moto": "moto (AWS S3)",
    "seaweedfs": "SeaweedFS (on-premise S3)",
    "azurite": "Azurite (Azure Blob)",
    "gcs": "gcp-storage-emulator (GCS)",
}
BUCKET = "bench"
GCS_PROJECT = "bench"


class Expect:
    """A write-only sink that checks each chunk against the bytes expected at its offset."""

    def __init__(self, expected: bytes) -> None:
        self.expected = memoryview(expected)
        self.offset = 0

    def write(self, chunk: bytes) -> int:
        end = self.offset + len(chunk)
        if end > len(self.expected) or self.expected[self.offset : end] != chunk:
            raise RuntimeError(f"GET returned different bytes at offset {self.offset}")
        self.offset = end
        return len(chunk)

    def done(self) -> None:
        if self.offset != len(self.expected):
            raise RuntimeError(f"GET returned {self.offset} bytes, expected {len(self.expected)}")


class Direct(Protocol):
    """Moves one object's bytes to a store and back."""

    #: How this client sends and reads a large object (printed under the table).
    mechanism: str

    def prepare(self) -> None:
        """Create the bucket/container."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str, sink: Expect) -> None: ...

    def close(self) -> None: ...


class S3Direct:
    """boto3 with the benchmarks' one client configuration: one ``put_object``, a streamed GET."""

    mechanism = "boto3 put_object (one request), get_object read in 1 MiB chunks"

    def __init__(self, endpoint: str, access_key: str, secret_key: str) -> None:
        self.client = s3_client(endpoint, access_key, secret_key)

    def prepare(self) -> None:
        self.client.create_bucket(Bucket=BUCKET)

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def get(self, key: str, sink: Expect) -> None:
        body = self.client.get_object(Bucket=BUCKET, Key=key)["Body"]
        for chunk in body.iter_chunks(MiB):
            sink.write(chunk)
        sink.done()

    def close(self) -> None:
        self.client.close()


class AzureDirect:
    """azure-storage-blob with its defaults (retries off, as for boto3)."""

    mechanism = (
        "upload_blob (one Put Blob up to 64 MiB, else 4 MiB staged blocks), "
        "download_blob chunks (first 32 MiB in one GET, then 4 MiB ranges)"
    )

    def __init__(self, connection_string: str) -> None:
        from azure.storage.blob import BlobServiceClient

        self.service = BlobServiceClient.from_connection_string(connection_string, retry_total=0)
        self.container = self.service.get_container_client(BUCKET)

    def prepare(self) -> None:
        self.container.create_container()

    def put(self, key: str, data: bytes) -> None:
        self.container.upload_blob(key, data, overwrite=True)

    def get(self, key: str, sink: Expect) -> None:
        for chunk in self.container.download_blob(key).chunks():
            sink.write(chunk)
        sink.done()

    def close(self) -> None:
        self.service.close()


class GcsDirect:
    """google-cloud-storage with its defaults (anonymous, as the emulator wants; retries off)."""

    mechanism = (
        "upload_from_file (one multipart request up to 8 MiB, else a resumable session in "
        "100 MiB chunks), download_to_file (one GET)"
    )

    def __init__(self, endpoint: str) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.client = storage.Client(
            project=GCS_PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
        self.bucket = self.client.bucket(BUCKET)

    def prepare(self) -> None:
        self.bucket = self.client.create_bucket(BUCKET)

    def put(self, key: str, data: bytes) -> None:
        self.bucket.blob(key).upload_from_file(io.BytesIO(data), size=len(data), retry=None)

    def get(self, key: str, sink: Expect) -> None:
        self.bucket.blob(key).download_to_file(sink, retry=None)
        sink.done()

    def close(self) -> None:
        self.client.close()


class LocalDirect:
    """A plain file per object: written whole and fsynced (file and directory), read in 1 MiB
    reads: what the gateway's local backend does for durability, without the gateway."""

    mechanism = "write + fsync (file and directory), read in 1 MiB reads"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, data: bytes) -> None:
        with (self.directory / key).open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def get(self, key: str, sink: Expect) -> None:
        with (self.directory / key).open("rb", buffering=0) as file:
            while chunk := file.read(MiB):
                sink.write(chunk)
        sink.done()

    def close(self) -> None:
        pass


@dataclass
class StandIn:
    kind: str
    #: The gateway config's ``storage`` section that puts its blobs here.
    storage: dict[str, Any]
    direct: Direct
    #: How the gateway's backend sends and reads a large blob (printed under the table).
    gateway_mechanism: str
    #: The stand-in's process (None for the local disk: there is none).
    pid: int | None = None
    log_path: Path | None = None
    _stop: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return KINDS[self.kind]

    def stop(self) -> None:
        self.direct.close()
        for action in reversed(self._stop):
            action()

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


S3_GATEWAY = "S3 multipart upload of 8 MiB parts, one ranged GET read in 1 MiB reads"


def start_standin(kind: str, workdir: Path) -> StandIn:
    """Start the stand-in ``kind`` (a key of ``KINDS``) with its data under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "local":
        return StandIn(
            kind,
            {"backend": "local", "path": str(workdir / "gateway-blobs")},
            LocalDirect(workdir / "direct"),
            "temporary file, fsync, rename, directory fsync; reads of 1 MiB",
        )
    if kind in ("moto", "seaweedfs"):
        return _start_s3(kind, workdir)
    if kind == "azurite":
        from blindstore.devtools.azurite import start_azurite

        azurite = start_azurite(workdir=workdir / "azurite")
        return _guarded(
            azurite.stop,
            lambda: StandIn(
                kind,
                {
                    "backend": "azure",
                    "name": "azure",
                    "settings": {"connection_string": azurite.connection_string},
                },
                AzureDirect(azurite.connection_string),
                "8 MiB staged blocks + Put Block List, ranged GETs of 1 MiB",
                azurite.process.pid,
                azurite.log_path,
                [azurite.stop],
            ),
        )
    if kind == "gcs":
        from blindstore.devtools.gcs_emulator import start_gcs_emulator

        emulator = start_gcs_emulator(workdir=workdir / "gcs-emulator")
        return _guarded(
            emulator.stop,
            lambda: StandIn(
                kind,
                {
                    "backend": "gcs",
                    "name": "gcs",
                    "settings": {"endpoint_url": emulator.endpoint_url, "project": GCS_PROJECT},
                },
                GcsDirect(emulator.endpoint_url),
                "resumable session in 8 MiB chunks, ranged GETs of 1 MiB",
                emulator.process.pid,
                emulator.log_path,
                [emulator.stop],
            ),
        )
    raise ValueError(f"unknown stand-in {kind!r}")


def _start_s3(kind: str, workdir: Path) -> StandIn:
    if kind == "moto":
        from blindstore.devtools.moto import start_moto

        server: Any = start_moto(workdir=workdir / "moto")
    else:
        from blindstore.devtools.seaweedfs import start_seaweedfs

        # Volumes large enough that a benchmark object does not spill over many of them.
        server = start_seaweedfs(workdir=workdir / "seaweedfs", volume_size_limit_mb=1024)
    settings = {
        "endpoint_url": server.endpoint_url,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "addressing_style": "path",
    }
    return _guarded(
        server.stop,
        lambda: StandIn(
            kind,
            {"backend": "s3", "name": kind, "settings": settings},
            S3Direct(server.endpoint_url, server.access_key, server.secret_key),
            S3_GATEWAY,
            server.process.pid,
            server.log_path,
            [server.stop],
        ),
    )


def _guarded(stop: Callable[[], None], build: Callable[[], StandIn]) -> StandIn:
    """``build()``, stopping the just-started server if that fails."""
    try:
        return build()
    except BaseException:
        stop()
        raise
