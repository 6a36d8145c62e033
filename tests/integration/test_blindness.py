"""What the storage backend sees (SECURITY-NOTES §5.3 case 31, docs/format.md §10).

Objects are stored with unique canary strings in every client-chosen field: bucket, key, user
metadata, system headers, tags and body. Nothing under the gateway's blob directory may then
contain a canary, in its bytes or in its path, nor carry extended attributes; blob paths are
``<container>/<2 hex>/<base32 id>`` only.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.gwserver import RunningGateway
from tests.integration import blobs

CONTAINER = re.compile(r"bs-[a-z2-7]{16,26}")
SHARD = re.compile(r"[0-9a-f]{2}")
BLOB_ID = re.compile(r"[a-z2-7]{26}")
PART = 5 * 1024 * 1024


class Canaries:
    """Unique marker strings, and every byte form they could leak in."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(8)
        self.values: list[str] = []

    def new(self, label: str) -> str:
        value = f"{label}-{self.tag}-{len(self.values)}"
        self.values.append(value)
        return value

    def forms(self) -> Iterator[tuple[str, bytes]]:
        for value in self.values:
            for name, form in (
                ("utf-8", value.encode()),
                ("utf-16-le", value.encode("utf-16-le")),
                ("utf-16-be", value.encode("utf-16-be")),
                ("percent-encoded", quote(value, safe="").encode()),
                ("upper-case", value.upper().encode()),
            ):
                yield f"{value} ({name})", form


def _body(canaries: Canaries, size: int) -> bytes:
    """A body full of canaries: a patient file as a client would send it."""
    marker = canaries.new("DUPONT_Jean_IRM_body").encode()
    return (marker * (size // len(marker) + 1))[:size]


def assert_backend_is_blind(gw: RunningGateway, canaries: Canaries, secrets_: list[bytes]) -> None:
    files = sorted(blobs.blob_files(gw))
    assert files, "nothing was stored"
    forms = list(canaries.forms()) + [(repr(s), s) for s in secrets_]
    for path in files:
        relative = path.relative_to(gw.blob_dir)
        for value in canaries.values:
            assert value.lower() not in str(relative).lower(), (value, relative)
        data = path.read_bytes()
        for name, form in forms:
            assert form not in data, f"{name} found in {relative}"
    for path in [gw.blob_dir, *gw.blob_dir.rglob("*")]:
        assert os.listxattr(path, follow_symlinks=False) == [], path


def assert_opaque_layout(gw: RunningGateway) -> None:
    """Only ``<container>/<shard>/<id>`` files (no temporary file left), owner-only modes."""
    for path in gw.blob_dir.rglob("*"):
        parts = path.relative_to(gw.blob_dir).parts
        assert CONTAINER.fullmatch(parts[0]), parts
        if len(parts) >= 2:
            assert SHARD.fullmatch(parts[1]), parts
        if len(parts) == 3:
            assert BLOB_ID.fullmatch(parts[2]), parts
            assert path.is_file()
            assert path.stat().st_mode & 0o077 == 0
        else:
            assert path.is_dir(), parts
            assert len(parts) < 3, parts
            assert path.stat().st_mode & 0o077 == 0


@pytest.fixture
def canary_bucket(s3: Any) -> Iterator[tuple[str, Canaries]]:
    canaries = Canaries()
    name = canaries.new("patient-bucket").lower()
    s3.create_bucket(Bucket=name)
    yield name, canaries
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=name)


def test_the_backend_sees_no_name_metadata_tag_or_plaintext(
    gw: RunningGateway, s3: Any, canary_bucket: tuple[str, Canaries]
) -> None:
    bucket, canaries = canary_bucket
    c = canaries.new
    stored: list[bytes] = []

    # A single PUT, with every client-chosen field carrying a canary.
    single_key = f"{c('patients')}/{c('DUPONT_Jean_IRM')}.dcm"
    single = _body(canaries, 100_000)
    s3.put_object(
        Bucket=bucket,
        Key=single_key,
        Body=single,
        ContentType=f"application/{c('dicom')}",
        ContentDisposition=f'attachment; filename="{c("dupont")}.dcm"',
        Metadata={"diagnosis": c("glioblastome"), c("metaname"): "x"},
        Tagging=f"patient={c('nir')}&{c('tagkey')}=1",
    )
    stored.append(single)
    s3.put_object_tagging(
        Bucket=bucket,
        Key=single_key,
        Tagging={"TagSet": [{"Key": "ward", "Value": c("oncologie")}]},
    )

    # A copy that replaces the metadata, under a new canary key.
    s3.copy_object(
        Bucket=bucket,
        Key=c("copy-of-dupont"),
        CopySource={"Bucket": bucket, "Key": single_key},
        MetadataDirective="REPLACE",
        Metadata={"diagnosis": c("rechute")},
        TaggingDirective="REPLACE",
        Tagging=f"copied={c('copytag')}",
    )

    # A multipart upload: checked while pending (parts stored, no row yet) and once complete.
    mp_key = f"{c('multipart')}/{c('scanner')}.raw"
    mp_body = _body(canaries, PART + 4096)
    stored.append(mp_body)
    upload = s3.create_multipart_upload(
        Bucket=bucket,
        Key=mp_key,
        Metadata={"diagnosis": c("mp-diagnosis")},
        Tagging=f"mp={c('mptag')}",
        ContentType=f"image/{c('mp-type')}",
    )
    parts = []
    for number, piece in ((1, mp_body[:PART]), (2, mp_body[PART:])):
        etag = s3.upload_part(
            Bucket=bucket, Key=mp_key, UploadId=upload["UploadId"], PartNumber=number, Body=piece
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    assert_backend_is_blind(gw, canaries, [])
    s3.complete_multipart_upload(
        Bucket=bucket, Key=mp_key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )

    # Digests of the plaintext would identify a known file: they stay in the catalog too.
    digests = []
    for body in stored:
        digests += [hashlib.md5(body).digest(), hashlib.md5(body).hexdigest().encode()]
        digests += [hashlib.sha256(body).digest(), body[:32]]
    assert_backend_is_blind(gw, canaries, digests)
    assert_opaque_layout(gw)
    assert s3.get_object(Bucket=bucket, Key=mp_key)["Body"].read() == mp_body


def test_every_stored_blob_is_named_by_the_catalog_and_opaque(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="a/b/c.txt", Body=b"x" * 1000)
    row = blobs.record(gw, bucket, "a/b/c.txt")
    path = blobs.blob_path(gw, bucket, "a/b/c.txt")
    shard, blob_id = row.parts[0].blob.split("/")
    assert CONTAINER.fullmatch(row.container)
    assert SHARD.fullmatch(shard)
    assert BLOB_ID.fullmatch(blob_id)
    assert path == gw.blob_dir / row.container / shard / blob_id
    assert path.stat().st_size == 1000 + 96
    assert path.read_bytes()[:4] == b"HGW1"
