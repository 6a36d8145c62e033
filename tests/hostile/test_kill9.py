"""`kill -9` during a large PUT, during a multipart part upload and during its completion, then
a restart: every acknowledged object reads back byte-identical, nothing partial is listed, and
`blindstore gc --grace 0` removes the orphans the crash left."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from blindstore.devtools.openbao import OpenBaoServer
from tests.hostile.rawsock import UNSIGNED_PAYLOAD, connect, object_path, signed_head
from tests.hostile.served import Served, serve_gateway, sha256, temp_files_under

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def crashy(openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    gateway = serve_gateway(tmp_path_factory.mktemp("kill9"), openbao)
    for n in range(4):
        gateway.put(f"before/{n}", secrets.token_bytes(300_000 * (n + 1)))
    yield gateway
    gateway.stop()


def _keys(served: Served) -> set[str]:
    pages = served.s3.get_paginator("list_objects_v2").paginate(Bucket=served.bucket)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def test_kill9_during_a_large_put_loses_no_acknowledged_object(crashy: Served) -> None:
    sock = connect(crashy)
    sock.sendall(
        signed_head(
            crashy,
            "PUT",
            object_path(crashy.bucket, "crash/put"),
            payload_hash=UNSIGNED_PAYLOAD,
            content_length=24 * MiB,
        )
    )
    sock.sendall(secrets.token_bytes(10 * MiB))
    time.sleep(0.5)
    crashy.kill9()
    sock.close()
    crashy.restart()
    assert "crash/put" not in _keys(crashy)


def _upload_parts(served: Served, key: str, count: int) -> tuple[str, list[dict[str, Any]], bytes]:
    upload = served.s3.create_multipart_upload(Bucket=served.bucket, Key=key)["UploadId"]
    parts, whole = [], b""
    for number in range(1, count + 1):
        data = secrets.token_bytes(5 * MiB)
        answer = served.s3.upload_part(
            Bucket=served.bucket, Key=key, UploadId=upload, PartNumber=number, Body=data
        )
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        whole += data
    return upload, parts, whole


def test_kill9_during_a_part_upload_keeps_the_acknowledged_parts(crashy: Served) -> None:
    key = "crash/multipart"
    upload, parts, whole = _upload_parts(crashy, key, 2)
    sock = connect(crashy)
    sock.sendall(
        signed_head(
            crashy,
            "PUT",
            object_path(crashy.bucket, key),
            query=f"partNumber=3&uploadId={upload}",
            payload_hash=UNSIGNED_PAYLOAD,
            content_length=16 * MiB,
        )
    )
    sock.sendall(secrets.token_bytes(6 * MiB))
    time.sleep(0.3)
    crashy.kill9()
    sock.close()
    crashy.restart()
    assert key not in _keys(crashy), "an incomplete multipart object is listed"
    # The parts acknowledged before the crash still make the object.
    crashy.s3.complete_multipart_upload(
        Bucket=crashy.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    crashy.ledger[key] = sha256(whole)


def test_kill9_during_completion_leaves_the_whole_object_or_none(crashy: Served) -> None:
    key = "crash/completion"
    upload, parts, whole = _upload_parts(crashy, key, 2)
    outcome: list[object] = []

    def complete() -> None:
        try:
            crashy.s3.complete_multipart_upload(
                Bucket=crashy.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )
            outcome.append("acknowledged")
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=complete)
    worker.start()
    time.sleep(0.05)
    crashy.kill9()
    worker.join(60)
    crashy.restart()
    if outcome == ["acknowledged"]:
        crashy.ledger[key] = sha256(whole)
    if key in _keys(crashy):
        # Committed before the crash (acknowledged or not): it must be whole.
        assert sha256(crashy.get(key)) == sha256(whole)
        crashy.ledger[key] = sha256(whole)
    else:
        with pytest.raises(ClientError):
            crashy.s3.head_object(Bucket=crashy.bucket, Key=key)


def test_gc_collects_what_the_crashes_left(crashy: Served) -> None:
    """Runs after the crashes above (file order): their orphan blobs and temporary files go."""
    first = crashy.gc()
    assert first["deleted"] + first["temp_files_removed"] > 0, first
    after = crashy.gc("--dry-run")
    assert after["orphans"] == 0, after
    assert temp_files_under(crashy.data_dir / "blobs") == []
