"""Uploads abandoned mid-body (FIN and RST): nothing partial becomes visible, the gateway goes
on, and `blindstore gc` leaves no orphan behind."""

from __future__ import annotations

import secrets
import time

import pytest
from botocore.exceptions import ClientError

from tests.hostile.rawsock import UNSIGNED_PAYLOAD, abandon, connect, object_path, signed_head
from tests.hostile.served import Served, temp_files_under

MiB = 1024 * 1024


def _absent(served: Served, key: str) -> bool:
    try:
        served.s3.head_object(Bucket=served.bucket, Key=key)
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    return False


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_upload_abandoned_mid_body_leaves_nothing_visible(served: Served, how: str) -> None:
    key = f"abandoned/{how}"
    sock = connect(served)
    head = signed_head(
        served,
        "PUT",
        object_path(served.bucket, key),
        payload_hash=UNSIGNED_PAYLOAD,
        content_length=16 * MiB,
    )
    sock.sendall(head + secrets.token_bytes(6 * MiB))
    time.sleep(0.5)
    abandon(sock, how)
    time.sleep(1.0)  # the gateway notices the end of the body and gives up the write
    assert served.alive, served.stderr_tail()
    assert _absent(served, key), "a partial upload became visible"
    listed = served.s3.list_objects_v2(Bucket=served.bucket, Prefix="abandoned/")
    assert listed.get("KeyCount", 0) == 0
    served.put(f"after-abandoned-{how}", secrets.token_bytes(200_000))


def test_gc_leaves_no_orphan_of_abandoned_uploads(served: Served) -> None:
    for how in ("rst", "fin"):
        sock = connect(served)
        head = signed_head(
            served,
            "PUT",
            object_path(served.bucket, f"gc/{how}"),
            payload_hash=UNSIGNED_PAYLOAD,
            content_length=8 * MiB,
        )
        sock.sendall(head + secrets.token_bytes(3 * MiB))
        abandon(sock, how)
    time.sleep(1.0)
    served.gc()
    after = served.gc("--dry-run")
    assert after["orphans"] == 0, after
    assert temp_files_under(served.data_dir / "blobs") == []
