"""`blindstore dev` as users run it: abandoned downloads, `kill -9`, an interrupted first start.

Regressions for issue 9 item 1 (the original report: `blindstore dev` died of a client that
stopped reading), item 2 (a first start whose `sys/init` answer was lost left the data directory
unusable, with a long traceback) and item 11 (dev's OpenBao outlived a `kill -9`-ed gateway and
the next start reused the orphan).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blindstore.devtools.persistent import start_persistent_openbao
from tests.hostile.devserved import DevRun, openbao_pids, start_dev
from tests.hostile.rawsock import abandon, connect, object_path, read_status_line
from tests.hostile.served import sha256


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRun]:
    run = start_dev(tmp_path_factory.mktemp("dev") / ".blindstore")
    yield run
    run.stop()


def _signed_get_head(run: DevRun, bucket: str, key: str) -> bytes:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host = f"127.0.0.1:{run.port}"
    request = AWSRequest(method="GET", url=f"http://{host}{object_path(bucket, key)}")
    credentials = Credentials(run.info["access_key"], run.info["secret_key"])
    S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    lines = [f"GET {object_path(bucket, key)} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_dev_survives_a_download_abandoned_mid_body(dev: DevRun, how: str) -> None:
    s3 = dev.s3()
    bucket = f"dl-{how}"
    data = secrets.token_bytes(64 * 1024 * 1024)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    for _ in range(2):
        sock = connect(dev)  # type: ignore[arg-type]  # needs only .port
        sock.sendall(_signed_get_head(dev, bucket, "big"))
        assert read_status_line(sock) == 200
        assert sock.recv(1024)
        time.sleep(1.0)  # the gateway blocks on a full socket buffer, then writes again
        abandon(sock, how)
    time.sleep(1.0)
    assert dev.alive, dev.output()[-3000:]
    assert sha256(s3.get_object(Bucket=bucket, Key="big")["Body"].read()) == sha256(data)
    s3.delete_object(Bucket=bucket, Key="big")


def test_openbao_of_a_killed_dev_exits_and_the_next_start_works(tmp_path: Path) -> None:
    data_dir = tmp_path / ".blindstore"
    first = start_dev(data_dir)
    try:
        first.s3().create_bucket(Bucket="kept")
        first.s3().put_object(Bucket="kept", Key="k", Body=b"survives kill -9")
        orphans = openbao_pids(data_dir)
        assert orphans, "no OpenBao found for the running dev"
        first.process.kill()  # kill -9: no `finally`, no cleanup in the gateway
        first.process.wait(10)
        deadline = time.monotonic() + 10
        while openbao_pids(data_dir):
            assert time.monotonic() < deadline, "OpenBao outlived the killed `blindstore dev`"
            time.sleep(0.1)
    finally:
        first.stop()
    second = start_dev(data_dir)
    try:
        assert set(openbao_pids(data_dir)).isdisjoint(orphans), "an orphan OpenBao was reused"
        body = second.s3().get_object(Bucket="kept", Key="k")["Body"].read()
        assert body == b"survives kill -9"
    finally:
        second.stop()
    assert not openbao_pids(data_dir)


def test_dev_recreates_an_openbao_whose_keys_were_never_saved(tmp_path: Path) -> None:
    """The state a first start left when its `sys/init` answer was lost: OpenBao initialised,
    no init.json. The next start re-creates it with one line, not a traceback."""
    data_dir = tmp_path / ".blindstore"
    start_persistent_openbao(data_dir / "openbao").stop()
    (data_dir / "openbao" / "init.json").unlink()
    run = start_dev(data_dir)
    try:
        run.s3().create_bucket(Bucket="works")
        run.s3().put_object(Bucket="works", Key="k", Body=b"after re-creation")
        assert run.s3().get_object(Bucket="works", Key="k")["Body"].read() == b"after re-creation"
        output = run.output()
        assert "keys were never saved" in output
        assert "Traceback" not in output
    finally:
        run.stop()
