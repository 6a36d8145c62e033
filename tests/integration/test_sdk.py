"""The Python SDK end to end against a running gateway: S3 data operations and the admin plane."""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from blindstore import Client
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.sdk import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ObjectInfo,
    Provenance,
)
from tests.gwserver import RunningGateway, start_admin_gateway

TOKEN = "admin-token-" + secrets.token_hex(8)

POLICY = """\
version: 1
backends:
  vault-disk:
    kind: local
    provider: Hôpital Nord
    jurisdiction: EEA
    certifications: [HDS]
    hds_activities: {{physical_sites: Hôpital Nord, hardware: Hôpital Nord,
      virtual_infrastructure: Hôpital Nord, application_platform: Hôpital Nord,
      administration_operation: Hôpital Nord, backup: Hôpital Nord}}
    settings: {{path: "{root}/vault-disk"}}
rules:
  - name: everything-on-vault
    targets: [vault-disk]
"""


@pytest.fixture(scope="module")
def gw(
    openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    root = tmp_path_factory.mktemp("sdk")
    running = start_admin_gateway(
        root,
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        admin_token=TOKEN,
        policy=POLICY.format(root=root),
    )
    yield running
    running.stop()


@pytest.fixture
def client(gw: RunningGateway) -> Client:
    creds = gw.tenants["demo"]
    return Client(gw.endpoint, creds.access_key, creds.secret_key, admin_token=TOKEN)


@pytest.fixture
def bucket(client: Client) -> Iterator[str]:
    name = f"sdk-{secrets.token_hex(6)}"
    client.create_bucket(name)
    yield name
    for page in client.list_objects(name):
        for listed in page.objects:
            client.delete_object(name, listed.key)
    client.delete_bucket(name)


# -- data plane ------------------------------------------------------------------------------


def test_an_object_round_trips_with_its_metadata_tags_and_type(client: Client, bucket: str) -> None:
    etag = client.put_object(
        bucket,
        "notes/2024.txt",
        "compte rendu",
        content_type="text/plain",
        metadata={"service": "cardio"},
        tags={"classification": "identifying"},
    )

    assert client.get_object(bucket, "notes/2024.txt") == b"compte rendu"
    info = client.head_object(bucket, "notes/2024.txt")
    assert isinstance(info, ObjectInfo)
    assert (info.size, info.etag, info.content_type) == (len(b"compte rendu"), etag, "text/plain")
    assert info.metadata == {"service": "cardio"}
    tagging = client.s3.get_object_tagging(Bucket=bucket, Key="notes/2024.txt")
    assert tagging["TagSet"] == [{"Key": "classification", "Value": "identifying"}]
    assert client.get_object(bucket, "notes/2024.txt", range="bytes=0-5") == b"compte"


def test_a_file_object_is_stored_and_read_back_into_a_file(
    client: Client, bucket: str, tmp_path: Path
) -> None:
    payload = os.urandom(300_000)
    client.put_object(bucket, "scan.bin", io.BytesIO(payload))

    info = client.get_object(bucket, "scan.bin", to=tmp_path / "scan.bin")
    sink = io.BytesIO()
    client.get_object(bucket, "scan.bin", to=sink)

    assert (tmp_path / "scan.bin").read_bytes() == payload
    assert sink.getvalue() == payload
    assert info.size == len(payload)


def test_listing_yields_pages_and_common_prefixes(client: Client, bucket: str) -> None:
    for key in ("a/1", "a/2", "b/1", "c", "d"):
        client.put_object(bucket, key, b"x")

    pages = list(client.list_objects(bucket, page_size=2))
    rolled = list(client.list_objects(bucket, delimiter="/"))

    assert [len(p.objects) for p in pages] == [2, 2, 1]
    assert [o.key for p in pages for o in p.objects] == ["a/1", "a/2", "b/1", "c", "d"]
    assert rolled[0].prefixes == ["a/", "b/"]
    assert [o.key for o in rolled[0].objects] == ["c", "d"]


def test_large_files_go_up_and_down_in_parts(
    client: Client, bucket: str, tmp_path: Path, gw: RunningGateway
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(11 * 1024 * 1024))

    client.upload_file(source, bucket, "big.bin", part_size=5 * 1024 * 1024)
    client.download_file(bucket, "big.bin", tmp_path / "back.bin", part_size=5 * 1024 * 1024)

    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    record = gw.run(gw.gateway.catalog.get_object(bucket, "big.bin"))
    assert record is not None
    assert len(record.parts) == 3


def test_a_data_subject_gets_its_own_key_on_put_and_on_multipart_upload(
    client: Client, bucket: str, tmp_path: Path, gw: RunningGateway
) -> None:
    source = tmp_path / "irm.dcm"
    source.write_bytes(os.urandom(6 * 1024 * 1024))

    client.put_object(bucket, "DUPONT/cr.txt", b"report", subject="patient-8c1f")
    client.upload_file(
        source, bucket, "DUPONT/irm.dcm", subject="patient-8c1f", part_size=5 * 1024 * 1024
    )
    client.put_object(bucket, "anonymous.txt", b"no subject")

    catalog = gw.gateway.catalog
    report = gw.run(catalog.get_object(bucket, "DUPONT/cr.txt"))
    scan = gw.run(catalog.get_object(bucket, "DUPONT/irm.dcm"))
    plain = gw.run(catalog.get_object(bucket, "anonymous.txt"))
    assert report is not None
    assert scan is not None
    assert plain is not None
    tenant = gw.run(catalog.get_tenant_by_name("demo"))
    assert tenant is not None
    assert report.key_name.startswith(f"hgw-p-{tenant.tenant_id.hex()}-")
    assert scan.key_name == report.key_name
    assert len(scan.parts) == 2
    assert plain.key_name == tenant.key_name
    assert client.get_object(bucket, "DUPONT/irm.dcm") == source.read_bytes()


def test_provenance_headers_are_signed_and_sent_on_writes(client: Client, bucket: str) -> None:
    sent: list[dict[str, str]] = []

    def capture(request: object, **_kwargs: object) -> None:
        headers = request.headers  # type: ignore[attr-defined]
        sent.append(
            {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in headers.items()}
        )

    client.s3.meta.events.register("before-send.s3.PutObject", capture)
    try:
        client.put_object(
            bucket,
            "consented.txt",
            b"x",
            provenance=Provenance(
                origin_system="DPI-Nord",
                consent_ref="CONS-2024-118",
                legal_basis="gdpr-9-2-h",
                retention_until=date(2044, 12, 31),
            ),
        )
    finally:
        client.s3.meta.events.unregister("before-send.s3.PutObject", capture)

    headers = sent[-1]
    assert headers["x-blindstore-origin-system"] == "DPI-Nord"
    assert headers["x-blindstore-consent-ref"] == "CONS-2024-118"
    assert headers["x-blindstore-legal-basis"] == "gdpr-9-2-h"
    assert headers["x-blindstore-retention-until"] == "2044-12-31"
    assert "x-blindstore-consent-ref" in headers["authorization"]  # signed
    # The next call carries none of them.
    client.put_object(bucket, "plain.txt", b"y")
    client.s3.meta.events.register("before-send.s3.PutObject", capture)
    try:
        client.put_object(bucket, "plain.txt", b"y")
    finally:
        client.s3.meta.events.unregister("before-send.s3.PutObject", capture)
    assert not any(name.startswith("x-blindstore-") for name in sent[-1])


def test_provenance_comes_back_on_head(client: Client, bucket: str) -> None:
    client.put_object(
        bucket,
        "consented.txt",
        b"x",
        provenance={"consent_ref": "CONS-2024-118", "retention_until": "2044-12-31"},
    )

    info = client.head_object(bucket, "consented.txt")

    assert info.provenance.consent_ref == "CONS-2024-118"
    assert str(info.provenance.retention_until).startswith("2044-12-31")


def test_s3_refusals_are_sdk_errors_with_status_and_code(client: Client, bucket: str) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.get_object(bucket, "absent")
    assert (missing.value.status, missing.value.code) == (404, "NoSuchKey")
    with pytest.raises(NotFoundError) as headless:
        client.head_object(bucket, "absent")
    assert headless.value.code == "NotFound"
    client.put_object(bucket, "keep", b"x")
    with pytest.raises(ConflictError) as busy:
        client.delete_bucket(bucket)
    assert busy.value.code == "BucketNotEmpty"
    wrong = Client(client.endpoint, "BSNOSUCHKEY000000000", "nope")
    with pytest.raises(AuthenticationError) as refused:
        wrong.list_buckets()
    assert refused.value.code == "InvalidAccessKeyId"


# -- admin plane -----------------------------------------------------------------------------


def test_admin_health_and_policy_operations(client: Client) -> None:
    assert client.health().status == "ok"
    assert client.ready().status == "ready"

    explained = client.explain("demo", "scans", "DUPONT/IRM.dcm", tags={"a": "b"})
    assert explained["rule"]["name"] == "everything-on-vault"
    assert [t["name"] for t in explained["targets"]] == ["vault-disk"]
    assert explained["targets"][0]["certifications"] == ["HDS"]

    checked = client.validate_policy(
        "version: 1\nbackends: {}\nrules:\n  - name: r\n    targets: [x]\n"
    )
    assert not checked.valid
    assert any(p.line == 5 for p in checked.problems)
    assert client.reload_policy() is True


def test_tenants_and_access_keys_through_the_sdk(client: Client, gw: RunningGateway) -> None:
    name = f"clinique-{secrets.token_hex(3)}"
    made = client.create_tenant(name)
    assert made.tenant.name == name
    assert made.access_key.secret_key not in repr(made)

    newcomer = Client(gw.endpoint, made.access_key.access_key_id, made.access_key.secret_key)
    newcomer.create_bucket(f"b-{secrets.token_hex(4)}")
    assert name in [t.name for t in client.tenants(page_size=1)]
    assert client.tenant(name).tenant_id == made.tenant.tenant_id

    second = client.create_access_key(name)
    keys = client.access_keys(name, page_size=1)
    assert sorted(k.access_key_id for k in keys) == sorted(
        [made.access_key.access_key_id, second.access_key_id]
    )

    client.revoke_access_key(name, made.access_key.access_key_id)
    with pytest.raises(AuthenticationError):
        newcomer.list_buckets()
    with pytest.raises(NotFoundError) as gone:
        client.revoke_access_key(name, made.access_key.access_key_id)
    assert gone.value.code == "NoSuchAccessKey"
    with pytest.raises(ConflictError) as twice:
        client.create_tenant(name)
    assert twice.value.code == "TenantAlreadyExists"


def test_admin_calls_need_the_admin_token(client: Client, gw: RunningGateway) -> None:
    creds = gw.tenants["demo"]
    for token in (None, "wrong", creds.secret_key):
        outsider = Client(gw.endpoint, creds.access_key, creds.secret_key, admin_token=token)
        assert outsider.health().status == "ok"
        with pytest.raises(AuthenticationError) as refused:
            list(outsider.tenants())
        assert (refused.value.status, refused.value.code) == (401, "AdminTokenRequired")


def test_accountability_methods_read_the_running_gateways_records(
    client: Client, bucket: str, gw: RunningGateway
) -> None:
    client.put_object(bucket, "scan.dcm", b"an image", provenance={"consent_ref": "C-7"})
    assert client.get_object(bucket, "scan.dcm") == b"an image"
    row = gw.run(gw.gateway.catalog.get_object(bucket, "scan.dcm"))
    assert row is not None

    record = client.transparency(bucket, "scan.dcm")
    assert [r["backend"]["name"] for r in record["replicas"]] == list(row.backends)
    assert record["key_custodian"]["key_name"] == row.key_name
    assert record["provenance"]["consent_ref"] == "C-7"
    assert record["last_accessed"] is not None
    assert client.bucket_summary(bucket)["objects"] >= 1
    assert client.tenant_summary("demo")["objects"] >= 1

    reads = client.audit_query(object_id=row.object_id.hex(), operation="GetObject").records
    assert reads[0]["principal"] == gw.tenants["demo"].access_key
    assert reads[0]["bucket"] == bucket
    assert any(r["operation"] == "PutObject" for r in client.audit_records(bucket=bucket))
    verified = client.audit_verify()
    assert verified.intact
    assert verified.records > 0

    notice = client.responsibilities()
    assert notice["schema"] == "blindstore.responsibilities/1"
    assert "<table" in client.responsibilities("html")
    assert client.responsibilities("md").startswith("# HDS hosting responsibilities")
