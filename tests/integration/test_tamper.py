"""Stored-object and catalog tampering (SECURITY-NOTES §5.3 cases 4-13 and 16).

Every test stores an object through boto3, damages its blob on disk (or its catalog row), then
reads it back. Small objects (< 4 MiB) are verified whole before the status line: the read fails
with 500 InternalError, no plaintext byte, and one fixed error body whatever the cause (no
oracle). Large objects stream: the client gets at most the verified chunks before the damage,
then the connection stops short of Content-Length; it never gets a wrong byte.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from blindstore.errors import IntegrityError
from tests.gwserver import RunningGateway
from tests.integration import blobs, rawhttp
from tests.integration.blobs import CHUNK, CHUNK_CT, HEADER, PREFIX, SALT, TAG, chunk_offset

#: 40000 bytes = two full chunks and a final chunk of 7232 bytes.
SMALL = 40_000
#: A multiple of the chunk size: its final chunk is empty (a bare tag).
ALIGNED = 2 * CHUNK
#: Streamed (above the 4 MiB verify-whole limit): 384 full chunks and a final one of 1234 bytes.
LARGE = 6 * 1024 * 1024 + 1234
LARGE_FULL_CHUNKS = LARGE // CHUNK

GENERIC_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message>"
    b"<RequestId></RequestId><HostId></HostId></Error>"
)

Tamper = Callable[[Path], None]


def _flip(offset: int) -> Tamper:
    return lambda path: blobs.flip_byte(path, offset)


def _truncate(length: int) -> Tamper:
    return lambda path: blobs.truncate(path, length)


def _truncate_by(count: int) -> Tamper:
    return lambda path: blobs.truncate(path, path.stat().st_size - count)


def _append(data: bytes) -> Tamper:
    return lambda path: blobs.append(path, data)


def _append_chunk(index: int) -> Tamper:
    def tamper(path: Path) -> None:
        data = path.read_bytes()
        blobs.append(path, data[chunk_offset(index) : chunk_offset(index) + CHUNK_CT])

    return tamper


def _rewrite_chunks(order: list[int | None]) -> Tamper:
    """Rebuild the first full chunks in ``order`` (None drops a slot), keeping the rest."""

    def tamper(path: Path) -> None:
        data = path.read_bytes()
        chunks = [data[chunk_offset(i) : chunk_offset(i + 1)] for i in range(2)]
        rebuilt = b"".join(chunks[i] for i in order if i is not None)
        path.write_bytes(data[:PREFIX] + rebuilt + data[chunk_offset(2) :])

    return tamper


def _delete(path: Path) -> None:
    path.unlink()


#: Damage to a SMALL object's blob (offsets per docs/format.md).
SMALL_TAMPERS: dict[str, Tamper] = {
    "magic": _flip(0),
    "suite id": _flip(4),
    "flags": _flip(5),
    "reserved": _flip(7),
    "object id": _flip(8 + 7),
    "salt": _flip(HEADER + 3),
    "commitment": _flip(HEADER + SALT + 31),
    "first chunk body": _flip(chunk_offset(0) + 100),
    "first chunk tag": _flip(chunk_offset(0) + CHUNK),
    "middle chunk body": _flip(chunk_offset(1) + 5000),
    "middle chunk tag": _flip(chunk_offset(1) + CHUNK + TAG - 1),
    "final chunk body": _flip(chunk_offset(2) + 10),
    "final chunk tag": _flip(-1),
    "truncated before the final chunk": _truncate(chunk_offset(2)),
    "truncated after the first chunk": _truncate(chunk_offset(1)),
    "truncated mid-chunk": _truncate(chunk_offset(1) + 777),
    "truncated mid-tag": _truncate_by(1),
    "truncated inside the prefix": _truncate(50),
    "emptied": _truncate(0),
    "one byte appended": _append(b"\x00"),
    "garbage appended": _append(os.urandom(100)),
    "copy of a chunk appended": _append_chunk(0),
    "chunks reordered": _rewrite_chunks([1, 0]),
    "chunk duplicated": _rewrite_chunks([0, 0]),
    "chunk deleted": _rewrite_chunks([0, None]),
    "blob deleted": _delete,
}

#: Damage to an ALIGNED object's blob, whose final chunk is empty.
ALIGNED_TAMPERS: dict[str, Tamper] = {
    "empty final chunk removed": _truncate_by(TAG),
    "empty final chunk flipped": _flip(-1),
    "chunk appended after the empty final chunk": _append_chunk(1),
    "garbage appended after the empty final chunk": _append(os.urandom(TAG)),
}


def _put(s3: Any, bucket: str, key: str, size: int) -> bytes:
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    return data


def _raw_get(gw: RunningGateway, bucket: str, key: str, **headers: str) -> rawhttp.RawResponse:
    path = rawhttp.object_path(bucket, key)
    return rawhttp.send_signed(rawhttp.sign(gw, "GET", path, headers=headers), gw)


def assert_opaque_failure(
    gw: RunningGateway, s3: Any, bucket: str, key: str, plaintext: bytes, range_: str = ""
) -> None:
    """The GET fails with 500 InternalError, the fixed error body, and no plaintext byte."""
    extra = {"Range": range_} if range_ else {}
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key=key, **extra)
    assert info.value.response["Error"]["Code"] == "InternalError"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    raw = _raw_get(gw, bucket, key, **({"Range": range_} if range_ else {}))
    assert raw.status == 500
    assert re.sub(rb"<RequestId>[^<]*</RequestId>", b"<RequestId></RequestId>", raw.body) == (
        GENERIC_BODY
    )
    assert raw.headers["content-type"] == "application/xml"
    if plaintext:
        assert plaintext[:16] not in raw.body


def streamed_prefix(s3: Any, bucket: str, key: str, size: int) -> bytes:
    """What a client receives of a damaged streamed object; asserts the body was cut short."""
    try:
        got = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:  # refused before the body: also acceptable
        refused = exc.response
    else:
        assert got["ContentLength"] == size
        received, error = blobs.read_until_failure(got["Body"])
        assert error is not None, "a damaged object was delivered whole"
        return received
    assert refused["Error"]["Code"] == "InternalError"
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 500
    return b""


# ---------------------------------------------------------------------------- small objects


@pytest.mark.parametrize("tamper", SMALL_TAMPERS, ids=list(SMALL_TAMPERS))
def test_a_damaged_small_object_is_refused_without_any_plaintext(
    gw: RunningGateway, s3: Any, bucket: str, tamper: str
) -> None:
    data = _put(s3, bucket, "victim", SMALL)
    SMALL_TAMPERS[tamper](blobs.blob_path(gw, bucket, "victim"))
    assert_opaque_failure(gw, s3, bucket, "victim", data)


@pytest.mark.parametrize("tamper", ALIGNED_TAMPERS, ids=list(ALIGNED_TAMPERS))
def test_a_chunk_aligned_object_without_its_exact_empty_final_chunk_is_refused(
    gw: RunningGateway, s3: Any, bucket: str, tamper: str
) -> None:
    data = _put(s3, bucket, "aligned", ALIGNED)
    ALIGNED_TAMPERS[tamper](blobs.blob_path(gw, bucket, "aligned"))
    assert_opaque_failure(gw, s3, bucket, "aligned", data)


def test_an_undamaged_object_still_reads_back(s3: Any, bucket: str) -> None:
    """Control for the tamper tests: the same sizes, untouched, read back exactly."""
    for size in (SMALL, ALIGNED, 0):
        data = _put(s3, bucket, f"intact-{size}", size)
        assert s3.get_object(Bucket=bucket, Key=f"intact-{size}")["Body"].read() == data


def test_an_empty_object_with_a_damaged_segment_is_refused(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    _put(s3, bucket, "empty", 0)
    blobs.flip_byte(blobs.blob_path(gw, bucket, "empty"), -1)
    assert_opaque_failure(gw, s3, bucket, "empty", b"")


def test_swapped_blobs_of_two_objects_of_one_tenant_are_refused(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    """Same tenant, same size, same DEK-less attacker: the header's object id gives it away."""
    a = _put(s3, bucket, "a", SMALL)
    b = _put(s3, bucket, "b", SMALL)
    blobs.swap_files(blobs.blob_path(gw, bucket, "a"), blobs.blob_path(gw, bucket, "b"))
    assert_opaque_failure(gw, s3, bucket, "a", b)
    assert_opaque_failure(gw, s3, bucket, "b", a)


def test_a_blob_copied_from_another_tenant_is_refused(
    gw: RunningGateway, s3: Any, s3_other: Any, bucket: str
) -> None:
    theirs = f"{bucket}-other"
    s3_other.create_bucket(Bucket=theirs)
    try:
        foreign = _put(s3_other, theirs, "x", SMALL)
        mine = _put(s3, bucket, "x", SMALL)
        source = blobs.blob_path(gw, theirs, "x")
        blobs.blob_path(gw, bucket, "x").write_bytes(source.read_bytes())
        assert_opaque_failure(gw, s3, bucket, "x", foreign)
        assert mine[:16] not in source.read_bytes()
    finally:
        s3_other.delete_object(Bucket=theirs, Key="x")
        s3_other.delete_bucket(Bucket=theirs)


def test_swapped_parts_of_a_multipart_object_are_refused(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    """Parts 1 and 2 share the object id and DEK; the part number in the context differs."""
    part = 5 * 1024 * 1024
    data = os.urandom(2 * part)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    etags = [
        s3.upload_part(
            Bucket=bucket,
            Key="mp",
            UploadId=upload["UploadId"],
            PartNumber=n,
            Body=data[(n - 1) * part : n * part],
        )["ETag"]
        for n in (1, 2)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload["UploadId"],
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]
        },
    )
    assert s3.get_object(Bucket=bucket, Key="mp", Range="bytes=0-99")["Body"].read() == data[:100]
    blobs.swap_files(blobs.blob_path(gw, bucket, "mp", 0), blobs.blob_path(gw, bucket, "mp", 1))
    assert_opaque_failure(gw, s3, bucket, "mp", data, range_="bytes=0-99")
    assert_opaque_failure(gw, s3, bucket, "mp", data, range_=f"bytes={part}-{part + 99}")
    assert streamed_prefix(s3, bucket, "mp", len(data)) == b""


# ---------------------------------------------------------------------------- ranges


def test_a_damaged_chunk_outside_the_range_does_not_fail_the_range(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    """Only the chunks covering a range are read and verified (docs/format.md §8.3)."""
    data = _put(s3, bucket, "r", SMALL)
    blobs.flip_byte(blobs.blob_path(gw, bucket, "r"), chunk_offset(1) + 50)
    for first, last in ((0, 99), (CHUNK - 10, CHUNK - 1), (2 * CHUNK, SMALL - 1), (SMALL - 1,) * 2):
        got = s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={first}-{last}")
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["Body"].read() == data[first : last + 1]


@pytest.mark.parametrize(
    "range_",
    [
        f"bytes={CHUNK}-{CHUNK}",
        f"bytes={CHUNK + 100}-{CHUNK + 200}",
        f"bytes={CHUNK - 1}-{CHUNK}",
        "bytes=0-",
        f"bytes=-{SMALL - 2 * CHUNK + 1}",
    ],
)
def test_a_damaged_chunk_inside_the_range_fails_the_range(
    gw: RunningGateway, s3: Any, bucket: str, range_: str
) -> None:
    data = _put(s3, bucket, "r", SMALL)
    blobs.flip_byte(blobs.blob_path(gw, bucket, "r"), chunk_offset(1) + 50)
    assert_opaque_failure(gw, s3, bucket, "r", data, range_=range_)


def test_a_damaged_header_fails_every_range(gw: RunningGateway, s3: Any, bucket: str) -> None:
    data = _put(s3, bucket, "r", SMALL)
    blobs.flip_byte(blobs.blob_path(gw, bucket, "r"), 10)
    for range_ in ("bytes=0-0", f"bytes={2 * CHUNK}-{2 * CHUNK + 5}", "bytes=-1"):
        assert_opaque_failure(gw, s3, bucket, "r", data, range_=range_)


def test_bytes_appended_after_the_final_chunk_fail_a_range_that_reaches_it(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    data = _put(s3, bucket, "r", SMALL)
    blobs.append(blobs.blob_path(gw, bucket, "r"), b"\x00")
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=0-9")["Body"].read() == data[:10]
    assert_opaque_failure(gw, s3, bucket, "r", data, range_="bytes=-10")


# ---------------------------------------------------------------------------- streamed objects

#: Damage to a LARGE object, and how many whole chunks may be delivered before it (None: any
#: number short of the whole object: the gateway holds back the end until the segment's length
#: is confirmed).
LARGE_TAMPERS: dict[str, tuple[Tamper, int | None]] = {
    "header": (_flip(3), 0),
    "commitment": (_flip(HEADER + SALT), 0),
    "first chunk tag": (_flip(chunk_offset(0) + CHUNK + 1), 0),
    "chunk 200 body": (_flip(chunk_offset(200) + 9), 200),
    "chunk 200 tag": (_flip(chunk_offset(200) + CHUNK + 15), 200),
    "final chunk tag": (_flip(-1), LARGE_FULL_CHUNKS),
    "truncated at a chunk boundary": (_truncate(chunk_offset(300)), 300),
    "truncated mid-chunk": (_truncate(chunk_offset(300) + 5), 300),
    "final chunk removed": (_truncate(chunk_offset(LARGE_FULL_CHUNKS)), LARGE_FULL_CHUNKS),
    "one byte appended": (_append(b"\x00"), None),
    "copy of a chunk appended": (_append_chunk(7), None),
}


@pytest.mark.parametrize("tamper", LARGE_TAMPERS, ids=list(LARGE_TAMPERS))
def test_a_damaged_large_object_stops_after_its_verified_chunks(
    gw: RunningGateway, s3: Any, bucket: str, tamper: str
) -> None:
    damage, good_chunks = LARGE_TAMPERS[tamper]
    data = _put(s3, bucket, "big", LARGE)
    damage(blobs.blob_path(gw, bucket, "big"))
    received = streamed_prefix(s3, bucket, "big", LARGE)
    assert received == data[: len(received)], "wrong plaintext delivered"
    assert len(received) % CHUNK == 0
    if good_chunks is None:
        assert len(received) < LARGE
    else:
        assert len(received) == good_chunks * CHUNK


def test_a_large_aligned_object_without_its_empty_final_chunk_is_cut_short(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    """Every full chunk verifies, so only the missing empty chunk says the blob was cut."""
    data = _put(s3, bucket, "big", 6 * 1024 * 1024)
    path = blobs.blob_path(gw, bucket, "big")
    blobs.truncate(path, path.stat().st_size - TAG)
    received = streamed_prefix(s3, bucket, "big", len(data))
    assert received == data[: len(received)]
    assert len(received) < len(data)


def test_a_damaged_chunk_of_a_large_object_fails_a_small_range_over_it_cleanly(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    data = _put(s3, bucket, "big", LARGE)
    blobs.flip_byte(blobs.blob_path(gw, bucket, "big"), chunk_offset(200) + 9)
    start = 200 * CHUNK - 10
    assert_opaque_failure(gw, s3, bucket, "big", data, range_=f"bytes={start}-{start + 99}")
    got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={start - 1000}-{start - 1}")
    assert got["Body"].read() == data[start - 1000 : start]


# ---------------------------------------------------------------------------- catalog rows


def _edit_row(gw: RunningGateway, bucket: str, key: str, **changes: Any) -> None:
    """Rewrite an object's catalog row as an insider with database access (no DEK) would:
    the row MAC is kept as it was."""
    row = blobs.record(gw, bucket, key)
    gw.run(gw.gateway.catalog.put_object(dataclasses.replace(row, **changes)))


@pytest.mark.parametrize(
    "edit",
    ["parts repointed", "size", "etag", "metadata", "content type", "last modified"],
)
def test_an_edited_catalog_row_fails_its_row_mac(
    gw: RunningGateway, s3: Any, bucket: str, edit: str
) -> None:
    a = _put(s3, bucket, "a", SMALL)
    _put(s3, bucket, "b", SMALL)
    s3.get_object(Bucket=bucket, Key="a")["Body"].read()  # its DEK is now in the cache
    row = blobs.record(gw, bucket, "a")
    changes: dict[str, Any] = {
        "parts repointed": {"parts": blobs.record(gw, bucket, "b").parts},
        "size": {"size": row.size - 1},
        "etag": {"etag": "0" * 32},
        "metadata": {"user_metadata": {"diagnosis": "none"}},
        "content type": {"headers": {"content-type": "text/html"}},
        "last modified": {"last_modified": row.last_modified + 86400},
    }[edit]
    _edit_row(gw, bucket, "a", **changes)
    assert_opaque_failure(gw, s3, bucket, "a", a)


def test_a_row_moved_under_another_name_fails_its_row_mac(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    """The name is bound by the row MAC: B's whole row (blob, DEK, MAC) placed under A's key.

    An object id names one row (catalog revision 0007): the copy is refused while B's row
    exists, so the insider moves it instead.
    """
    _put(s3, bucket, "a", SMALL)
    b = _put(s3, bucket, "b", SMALL)
    row_b = blobs.record(gw, bucket, "b")
    with pytest.raises(IntegrityError):
        gw.run(gw.gateway.catalog.put_object(dataclasses.replace(row_b, key="a")))
    gw.run(gw.gateway.catalog.delete_object(bucket, "b"))
    gw.run(gw.gateway.catalog.put_object(dataclasses.replace(row_b, key="a")))
    assert_opaque_failure(gw, s3, bucket, "a", b)


def test_a_wrapped_dek_moved_from_another_row_is_refused_by_vault(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    """The wrapped DEK is outside the row MAC (rewrap changes it), but Transit's derived-key
    context (tenant + object id) makes B's wrapped DEK unopenable as A's."""
    a = _put(s3, bucket, "a", SMALL)
    _put(s3, bucket, "b", SMALL)
    row_b = blobs.record(gw, bucket, "b")
    _edit_row(gw, bucket, "a", wrapped_dek=row_b.wrapped_dek, key_version=row_b.key_version)
    assert_opaque_failure(gw, s3, bucket, "a", a)


def test_a_row_pointing_at_a_missing_backend_is_refused(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    """The replica list is outside the row MAC (repairs need no DEK): a name this gateway does
    not know serves nothing."""
    a = _put(s3, bucket, "a", SMALL)
    _edit_row(gw, bucket, "a", backends=("elsewhere",))
    assert_opaque_failure(gw, s3, bucket, "a", a)
