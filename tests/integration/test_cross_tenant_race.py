"""Two gateways on one catalog (SQLite file, PostgreSQL): tenant X's bucket is deleted through
gateway A and re-created by tenant Y, while gateway B still caches X as its owner (issue 9,
item 10). Whatever X then does through B is refused (AccessDenied): nothing is written into Y's
bucket, and none of Y's objects, names or metadata reach X.

The bucket cache normally lives 1 s; B's is made long so that the race window stays open for
the whole test instead of depending on timing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from blindstore import provision
from blindstore.backends.memory import MemoryBackend
from blindstore.catalog.sql import SqlCatalog
from blindstore.errors import AccessDenied
from blindstore.gateway import Gateway, Principal, WriteMeta
from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.s3.checksums import BodyVerifier
from blindstore.s3.conditions import Conditions
from blindstore.server.wire import VerifiedBody
from tests.contract.postgres import fresh_database

Y_SECRET = b"tenant Y's patient record"


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _check() -> VerifiedBody:
    return VerifiedBody(BodyVerifier())


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        with fresh_database() as url:
            yield url


async def _race(url: str) -> None:
    keys, backend = InMemoryKeyWrapper(), MemoryBackend()
    a = Gateway(SqlCatalog(url), keys, {"memory": backend}, default_backend="memory")
    b = Gateway(
        SqlCatalog(url),
        keys,
        {"memory": backend},
        default_backend="memory",
        bucket_cache_seconds=3600,
    )
    try:
        made = await provision.create_tenant(a.catalog, keys, "x")
        x = Principal(made.access_key_id, made.tenant)
        made = await provision.create_tenant(a.catalog, keys, "y")
        y = Principal(made.access_key_id, made.tenant)

        await a.create_bucket(x, "shared", "us-east-1")
        await b.put_object(x, "shared", "mine", _body(b"x's data"), _check(), WriteMeta())
        await a.delete_object(x, "shared", "mine")
        await a.delete_bucket(x, "shared")
        await a.create_bucket(y, "shared", "us-east-1")
        await a.put_object(
            y, "shared", "k", _body(Y_SECRET), _check(), WriteMeta(tags={"owner": "y"})
        )
        upload = await a.create_upload(y, "shared", "mp", WriteMeta())

        # B still believes X owns "shared".
        attempts = {
            "PutObject new key": lambda: b.put_object(
                x, "shared", "planted", _body(b"x's data"), _check(), WriteMeta()
            ),
            "PutObject over Y's key": lambda: b.put_object(
                x, "shared", "k", _body(b"x's data"), _check(), WriteMeta()
            ),
            "GetObject": lambda: b.get_object(x, "shared", "k"),
            "HeadObject": lambda: b.get_object(x, "shared", "k", head=True),
            "GetObject 304": lambda: b.get_object(
                x, "shared", "k", conditions=Conditions(if_none_match="*")
            ),
            "GetObjectTagging": lambda: b.get_tags(x, "shared", "k"),
            "PutObjectTagging": lambda: b.put_tags(x, "shared", "k", {"owner": "x"}),
            "DeleteObject": lambda: b.delete_object(x, "shared", "k"),
            "ListObjects": lambda: b.list_objects(
                x, "shared", prefix="", delimiter="", start_after="", max_keys=1000
            ),
            "ListMultipartUploads": lambda: b.list_uploads(
                x, "shared", prefix="", key_marker="", upload_id_marker="", max_uploads=1000
            ),
            "CreateMultipartUpload": lambda: b.create_upload(x, "shared", "mp2", WriteMeta()),
            "ListParts": lambda: b.list_parts(
                x, "shared", "mp", upload.upload_id, part_number_marker=0, max_parts=1000
            ),
            "CopyObject from it": lambda: b.copy_object(
                x,
                "shared",
                "k",
                "shared",
                "copy",
                _check(),
                source_conditions=Conditions(),
                meta=None,
                tags=None,
            ),
        }
        answers = {}
        for name, attempt in attempts.items():
            try:
                await attempt()  # type: ignore[no-untyped-call]
                answers[name] = "served"
            except AccessDenied:
                answers[name] = "AccessDenied"
            except Exception as exc:  # any other answer fails the test, named below
                answers[name] = type(exc).__name__
        assert answers == dict.fromkeys(attempts, "AccessDenied")

        # Nothing of X's landed in Y's bucket, and Y's object is untouched.
        page = await a.list_objects(
            y, "shared", prefix="", delimiter="", start_after="", max_keys=1000
        )
        assert [o.key for o in page.objects] == ["k"]
        read = await a.get_object(y, "shared", "k")
        assert b"".join([c async for c in read.body]) == Y_SECRET
        assert await a.get_tags(y, "shared", "k") == {"owner": "y"}
        uploads = await a.list_uploads(
            y, "shared", prefix="", key_marker="", upload_id_marker="", max_uploads=1000
        )
        assert [u.key for u in uploads.uploads] == ["mp"]
    finally:
        await a.close()
        await b.catalog.close()


def test_a_stale_bucket_owner_cache_never_lets_a_tenant_into_anothers_bucket(
    catalog_url: str,
) -> None:
    anyio.run(_race, catalog_url)
