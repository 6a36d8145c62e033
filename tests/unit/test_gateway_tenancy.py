"""Tenancy and row authentication in the gateway, over in-process fakes (memory backend and KEK)
and a real SQLite catalog.

- every path that reveals an object's metadata (HEAD, GetObjectTagging, 304/412, copy-source
  conditions) checks crypto-shredding first, then the row MAC;
- pending-upload and part rows are authenticated with keys derived from the object's DEK, and
  completion refuses an edited one before anything is committed;
- a row of another tenant is never served, overwritten, tagged or deleted.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from sqlalchemy import create_engine, update

from blindstore import provision
from blindstore.backends.memory import MemoryBackend
from blindstore.catalog.schema import objects, upload_parts, uploads
from blindstore.catalog.sql import SqlCatalog
from blindstore.errors import (
    AccessDenied,
    IntegrityError,
    InvalidRequest,
    KeyShredded,
    NoSuchKey,
)
from blindstore.gateway import Gateway, Principal, WriteMeta
from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.s3.checksums import BodyVerifier
from blindstore.s3.conditions import Conditions
from blindstore.server.wire import VerifiedBody

SECRET = b"patient record " * 100


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _check() -> VerifiedBody:
    return VerifiedBody(BodyVerifier())


class World:
    def __init__(self, url: str) -> None:
        self.url = url
        self.keys = InMemoryKeyWrapper()
        self.catalog = SqlCatalog(url)
        self.gateway = Gateway(
            self.catalog, self.keys, {"memory": MemoryBackend()}, default_backend="memory"
        )
        self.me: Principal
        self.other: Principal

    async def setup(self) -> None:
        made = await provision.create_tenant(self.catalog, self.keys, "me")
        self.me = Principal(made.access_key_id, made.tenant)
        made = await provision.create_tenant(self.catalog, self.keys, "other")
        self.other = Principal(made.access_key_id, made.tenant)
        await self.gateway.create_bucket(self.me, "b", "us-east-1")
        await self.gateway.put_object(
            self.me, "b", "k", _chunks(SECRET), _check(), WriteMeta(tags={"t": "v"})
        )

    def sql(self, statement: object) -> None:
        """What an insider with write access to the catalog database (and nothing else) does."""
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                conn.execute(statement)  # type: ignore[call-overload]
        finally:
            engine.dispose()

    def shred(self) -> None:
        self.gateway.revoked_keys = frozenset({self.me.tenant.key_name})


@pytest.fixture
def world(tmp_path: object) -> Iterator[World]:
    w = World(f"sqlite:///{tmp_path}/catalog.db")
    anyio.run(w.setup)
    yield w
    anyio.run(w.gateway.close)


def _run(coro_fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        return await coro_fn(*args, **kwargs)

    return anyio.run(main)


# ------------------------------------------------------------------ metadata paths

_ETAG = "whatever"


def _metadata_paths(w: World) -> dict[str, object]:
    """Each answer that reveals something about object "k" without reading its bytes."""
    g = w.gateway
    return {
        "HeadObject": lambda: g.get_object(w.me, "b", "k", head=True),
        "HeadObject (public)": lambda: g.head_object(w.me, "b", "k"),
        "GetObjectTagging": lambda: g.get_tags(w.me, "b", "k"),
        "GET If-None-Match (304)": lambda: g.get_object(
            w.me, "b", "k", conditions=Conditions(if_none_match="*")
        ),
        "GET If-Match (412)": lambda: g.get_object(
            w.me, "b", "k", conditions=Conditions(if_match=_ETAG)
        ),
        "HEAD If-Match (412)": lambda: g.get_object(
            w.me, "b", "k", conditions=Conditions(if_match=_ETAG), head=True
        ),
        "CopyObject x-amz-copy-source-if-match (412)": lambda: g.copy_object(
            w.me,
            "b",
            "k",
            "b",
            "copy",
            _check(),
            source_conditions=Conditions(if_match=_ETAG),
            meta=None,
            tags=None,
        ),
    }


METADATA_PATHS = [
    "HeadObject",
    "HeadObject (public)",
    "GetObjectTagging",
    "GET If-None-Match (304)",
    "GET If-Match (412)",
    "HEAD If-Match (412)",
    "CopyObject x-amz-copy-source-if-match (412)",
]


@pytest.mark.parametrize("path", METADATA_PATHS)
def test_every_metadata_path_refuses_a_shredded_object(world: World, path: str) -> None:
    world.shred()
    with pytest.raises(KeyShredded):
        anyio.run(_metadata_paths(world)[path])  # type: ignore[arg-type]


def test_tagging_a_shredded_object_is_refused(world: World) -> None:
    world.shred()
    with pytest.raises(KeyShredded):
        _run(world.gateway.put_tags, world.me, "b", "k", {"a": "b"})


@pytest.mark.parametrize("path", METADATA_PATHS)
def test_every_metadata_path_refuses_an_edited_row(world: World, path: str) -> None:
    # Someone with catalog write access changes the content type (covered by the row MAC).
    world.sql(
        update(objects)
        .where(objects.c.key == "k")
        .values(headers='{"content-type":"application/x-forged"}')
    )
    with pytest.raises(IntegrityError):
        anyio.run(_metadata_paths(world)[path])  # type: ignore[arg-type]


def test_metadata_paths_still_answer_for_an_authentic_row(world: World) -> None:
    record = _run(world.gateway.head_object, world.me, "b", "k")
    assert record.size == len(SECRET)
    assert _run(world.gateway.get_tags, world.me, "b", "k") == {"t": "v"}


# ------------------------------------------------------------------ rows of another tenant


def test_a_row_of_another_tenant_in_ones_bucket_is_never_served_or_touched(
    world: World,
) -> None:
    # Only a catalog edit can do this (writes check the owner in their transaction).
    world.sql(
        update(objects).where(objects.c.key == "k").values(tenant_id=world.other.tenant.tenant_id)
    )
    g = world.gateway
    for error, attempt in (
        (IntegrityError, lambda: g.get_object(world.me, "b", "k")),
        (IntegrityError, lambda: g.get_object(world.me, "b", "k", head=True)),
        (IntegrityError, lambda: g.get_tags(world.me, "b", "k")),
        (IntegrityError, lambda: g.put_tags(world.me, "b", "k", {"a": "b"})),
        # Checked by the catalog, in the deleting transaction.
        (AccessDenied, lambda: g.delete_object(world.me, "b", "k")),
    ):
        with pytest.raises(error):
            anyio.run(attempt)  # type: ignore[arg-type]
    assert anyio.run(world.catalog.get_object, "b", "k") is not None


# ------------------------------------------------------------------ upload and part MACs


def _start_upload(
    w: World, key: str = "big", parts: tuple[int, ...] = (70_000,)
) -> tuple[str, list[tuple[int, str]]]:
    """An upload of parts of these sizes (completion then needs all but the last >= 5 MiB)."""

    async def main() -> tuple[str, list[tuple[int, str]]]:
        upload = await w.gateway.create_upload(w.me, "b", key, WriteMeta())
        etags = []
        for number, size in enumerate(parts, 1):
            data = os.urandom(size)
            part = await w.gateway.upload_part(
                w.me, "b", key, upload.upload_id, number, _chunks(data), _check()
            )
            etags.append((number, part.etag))
        return upload.upload_id, etags

    return anyio.run(main)


def _complete(w: World, upload_id: str, etags: list[tuple[int, str]], key: str = "big") -> object:
    return _run(w.gateway.complete_upload, w.me, "b", key, upload_id, etags)


def test_upload_and_part_rows_carry_macs(world: World) -> None:
    upload_id, _ = _start_upload(world, parts=(10, 20))
    upload = anyio.run(world.catalog.get_upload, upload_id)
    parts, _ = anyio.run(world.catalog.list_parts, upload_id)
    assert upload is not None
    assert len(upload.row_mac) == 32
    assert [len(p.row_mac) for p in parts] == [32, 32]


@pytest.mark.parametrize(
    ("table", "change"),
    [
        (uploads, {"key": "elsewhere"}),
        (uploads, {"headers": '{"content-type":"text/forged"}'}),
        (uploads, {"user_metadata": '{"patient":"someone else"}'}),
        (uploads, {"retention_until": 1.0}),
        (uploads, {"row_mac": b"\x00" * 32}),
        (upload_parts, {"etag": "0" * 32}),
        (upload_parts, {"size": 1}),
        (upload_parts, {"blob": "00/aaaaaaaaaaaaaaaaaaaaaaaaaa"}),
        (upload_parts, {"row_mac": b"\x00" * 32}),
    ],
    ids=lambda v: getattr(v, "name", None) or ",".join(v),
)
def test_completion_refuses_an_edited_upload_or_part_row_and_commits_nothing(
    world: World, table: object, change: dict[str, object]
) -> None:
    upload_id, etags = _start_upload(world)
    key = str(change.get("key", "big"))
    if "etag" in change:
        etags = [(1, str(change["etag"]))]
    world.sql(update(table).values(**change))  # type: ignore[attr-defined]

    with pytest.raises(IntegrityError):
        _complete(world, upload_id, etags, key=key)

    assert anyio.run(world.catalog.get_object, "b", key) is None
    assert anyio.run(world.catalog.get_upload, upload_id) is not None


def test_a_part_with_an_edited_row_is_refused_when_the_upload_is_edited_too(
    world: World,
) -> None:
    # UploadPart authenticates the upload row before writing a part under it.
    upload_id, _ = _start_upload(world)
    world.sql(update(uploads).values(key="other"))
    with pytest.raises(IntegrityError):
        _run(
            world.gateway.upload_part,
            world.me,
            "b",
            "other",
            upload_id,
            3,
            _chunks(b"x"),
            _check(),
        )


def test_an_upload_pending_before_revision_0007_cannot_be_continued_but_can_be_aborted(
    world: World,
) -> None:
    upload_id, etags = _start_upload(world)
    world.sql(update(uploads).values(row_mac=None))
    world.sql(update(upload_parts).values(row_mac=None))
    with pytest.raises(InvalidRequest, match="abort it and upload"):
        _complete(world, upload_id, etags)
    with pytest.raises(InvalidRequest):
        _run(
            world.gateway.upload_part,
            world.me,
            "b",
            "big",
            upload_id,
            3,
            _chunks(b"x"),
            _check(),
        )
    _run(world.gateway.abort_upload, world.me, "b", "big", upload_id)
    assert anyio.run(world.catalog.get_upload, upload_id) is None


def test_a_planted_part_does_not_make_abort_delete_another_objects_blob(world: World) -> None:
    upload_id, _ = _start_upload(world, parts=(1000, 1000))
    victim = anyio.run(world.catalog.get_object, "b", "k")
    assert victim is not None
    world.sql(
        update(upload_parts)
        .where(upload_parts.c.part_number == 2)
        .values(blob=victim.parts[0].blob)
    )
    _run(world.gateway.abort_upload, world.me, "b", "big", upload_id)
    read = _run(world.gateway.get_object, world.me, "b", "k")

    async def body() -> bytes:
        return b"".join([chunk async for chunk in read.body])

    assert anyio.run(body) == SECRET


def test_an_authentic_upload_completes(world: World) -> None:
    upload_id, etags = _start_upload(world)
    _complete(world, upload_id, etags)
    with pytest.raises(NoSuchKey):
        _run(world.gateway.head_object, world.me, "b", "missing")
    assert _run(world.gateway.head_object, world.me, "b", "big").size == 70_000
