"""gcp-storage-emulator (the GCS stand-in), started once per test session, and a plain client
to look at it behind the backend's back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from google.api_core import exceptions as api_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[attr-defined,import-untyped,unused-ignore]

from blindstore.devtools.gcs_emulator import GcsEmulator, start_gcs_emulator

PROJECT = "blindstore-tests"


class _Shared:
    """The session's one emulator and how many fixture definitions hold it."""

    emulator: GcsEmulator | None = None
    holders = 0


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    """One emulator for the session, its data on disk under a temporary directory (the
    blindness tests read it raw).

    Every test module imports this fixture, and pytest keeps one session-scoped instance per
    module that defines it: the modules share the first emulator, stopped after the last.
    """
    if _Shared.emulator is None:
        _Shared.emulator = start_gcs_emulator(workdir=tmp_path_factory.mktemp("gcs-emulator"))
    _Shared.holders += 1
    try:
        yield _Shared.emulator
    finally:
        _Shared.holders -= 1
        if _Shared.holders == 0:
            _Shared.emulator.stop()
            _Shared.emulator = None


def emulator_client(emulator: GcsEmulator) -> Any:
    """A plain google-cloud-storage client on the emulator."""
    return storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": emulator.endpoint_url},
    )


def held_objects(client: Any, prefix: str) -> list[str]:
    """``bucket/object`` for every object in every bucket named ``prefix…``."""
    return sorted(
        f"{bucket.name}/{blob.name}"
        for bucket in client.list_buckets()
        if bucket.name.startswith(prefix)
        for blob in client.list_blobs(bucket.name)
    )


def remove_buckets(client: Any, prefix: str) -> None:
    """Delete the buckets named ``prefix…`` and their objects: the emulator rewrites one
    metadata file holding everything on every request, so it slows down as objects pile up."""
    for bucket in client.list_buckets():
        if not bucket.name.startswith(prefix):
            continue
        for blob in client.list_blobs(bucket.name):
            blob.delete()
        # Conflict: the emulator keeps a bucket that an uncancelled upload session refers to.
        with contextlib.suppress(api_errors.Conflict):
            bucket.delete()
