"""The blob store's disk fills up: PUTs get a clean 503 (the cause goes to the log, never to the
client), nothing partial stays behind, and writes work again once space is freed.

The blob store is an 8 MiB tmpfs mounted by the test (we run as root, here and in CI).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from blindstore.devtools.openbao import OpenBaoServer
from tests.hostile.served import Served, serve_gateway, temp_files_under

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    mount_point = tmp_path_factory.mktemp("tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            "the disk-full attack needs to mount a tmpfs (run as root, or with CAP_SYS_ADMIN): "
            + done.stderr.strip()
        )
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture(scope="module")
def full(
    openbao: OpenBaoServer, small_disk: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    gateway = serve_gateway(
        tmp_path_factory.mktemp("disk-full"), openbao, storage_path=small_disk / "blobs"
    )
    yield gateway
    gateway.stop()


def test_a_full_disk_gives_503_and_writes_resume_once_space_is_freed(
    full: Served, small_disk: Path
) -> None:
    filler = small_disk / "filler"
    # Leave about 1 MiB free.
    free = _free_bytes(small_disk)
    filler.write_bytes(b"\0" * max(free - MiB, 0))
    try:
        with pytest.raises(ClientError) as refused:
            full.s3.put_object(Bucket=full.bucket, Key="too-big", Body=secrets.token_bytes(3 * MiB))
        answer = refused.value.response
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert answer["Error"]["Code"] == "ServiceUnavailable"
        assert "No space" not in str(answer), "the cause must not reach the client"
        assert full.alive
        assert temp_files_under(small_disk) == []
    finally:
        filler.unlink()
    full.put("fits-now", secrets.token_bytes(3 * MiB))
    keys = [o["Key"] for o in full.s3.list_objects_v2(Bucket=full.bucket).get("Contents", [])]
    assert "too-big" not in keys


def _free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize
