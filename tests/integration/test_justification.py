"""Key-access justification, end to end: an S3 request through the gateway, then OpenBao's own
audit log names the tenant, the access key, the S3 operation and the request id the client got
back, in clear, on the Transit calls made for it (provision.sh configures the header)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from blindstore.devtools.openbao import OpenBaoServer, start_openbao
from tests.gwserver import RunningGateway, start_gateway
from tests.integration.provisioned import login, run_provision

HEADER = "x-blindstore-justification"


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with start_openbao(workdir=tmp_path_factory.mktemp("why-openbao"), audit=True) as server:
        yield server


@pytest.fixture(scope="module")
def running(
    bao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    credentials = tmp_path_factory.mktemp("why") / "credentials"
    run_provision(bao, "--out", str(credentials))
    gateway = start_gateway(
        tmp_path_factory.mktemp("why-gateway"),
        vault_addr=bao.addr,
        vault_token=login(bao, credentials, "blindstore-gateway"),
        admin_token=login(bao, credentials, "blindstore-kms-admin"),
        tenants=("demo",),
        # No unwrapped-DEK cache: every GET reaches Transit.
        overrides={"keys": {"cache_ttl_seconds": 0}},
    )
    yield gateway
    gateway.stop()


def _tenant_key(running: RunningGateway) -> str:
    tenant = running.run(running.gateway.catalog.get_tenant_by_name("demo"))
    assert tenant is not None
    return tenant.key_name


def _justifications(audit_log: Path, operation: str, key_name: str) -> list[str]:
    """The justification header of every audited request to ``transit/<operation>/<key>``."""
    found = []
    for line in audit_log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        request = entry.get("request", {})
        if entry.get("type") == "request" and request.get("path") == (
            f"transit/{operation}/{key_name}"
        ):
            found.extend(request.get("headers", {}).get(HEADER, []))
    return found


def test_a_put_and_a_get_are_justified_in_the_openbao_audit_log(
    running: RunningGateway, bao: OpenBaoServer
) -> None:
    assert bao.audit_log_path is not None
    s3 = running.client("demo")
    akid = running.tenants["demo"].access_key
    bucket, key = "patients", f"dupont-jean-{secrets.token_hex(4)}/irm.dcm"
    s3.create_bucket(Bucket=bucket)
    put_id = s3.put_object(Bucket=bucket, Key=key, Body=b"scan")["ResponseMetadata"]["RequestId"]
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == b"scan"
    get_id = got["ResponseMetadata"]["RequestId"]

    key_name = _tenant_key(running)
    # The PUT found the DEK pool empty: the refill it triggered carries its justification.
    wraps = _justifications(bao.audit_log_path, "encrypt", key_name)
    assert f"tenant=demo principal={akid} op=PutObject request={put_id} (pool refill)" in wraps
    unwraps = _justifications(bao.audit_log_path, "decrypt", key_name)
    assert f"tenant=demo principal={akid} op=GetObject request={get_id}" in unwraps
    # Names of objects and buckets (health data) never reach the key service's log.
    for header in wraps + unwraps:
        assert "dupont" not in header
        assert bucket not in header
        assert header.isascii()


def test_every_concurrent_get_is_named_on_the_unwrap_that_served_it(
    running: RunningGateway, bao: OpenBaoServer
) -> None:
    assert bao.audit_log_path is not None
    s3 = running.client("demo")
    bucket = f"batch-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    names = [f"obj-{i}" for i in range(12)]
    for name in names:
        s3.put_object(Bucket=bucket, Key=name, Body=name.encode())

    def get(name: str) -> str:
        response = s3.get_object(Bucket=bucket, Key=name)
        assert response["Body"].read() == name.encode()
        request_id = response["ResponseMetadata"]["RequestId"]
        assert isinstance(request_id, str)
        return request_id

    with ThreadPoolExecutor(max_workers=12) as pool:
        request_ids = list(pool.map(get, names))

    # Concurrent unwraps may be coalesced into one batch call: its header then lists them all.
    unwraps = _justifications(bao.audit_log_path, "decrypt", _tenant_key(running))
    named = {
        part.rsplit("request=", 1)[1]
        for header in unwraps
        for part in header.split(", ")
        if "op=GetObject" in part
    }
    assert set(request_ids) <= named
