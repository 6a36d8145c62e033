"""Provenance and consent through boto3 against a real gateway and OpenBao: headers in, headers
out; multipart and copy; a policy that requires consent; `blindstore retention enforce`."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from blindstore.catalog.base import ObjectRecord
from blindstore.cli.main import app
from blindstore.devtools.openbao import OpenBaoServer
from tests.gwserver import RunningGateway, start_cli_gateway

POLICY = """\
version: 1
backends:
  sovereign:
    kind: local
    provider: Hôpital Nord
    jurisdiction: EEA
    settings: {{path: "{root}/sovereign"}}
  onprem:
    kind: local
    provider: Hôpital Nord
    jurisdiction: EEA
    settings: {{path: "{root}/onprem"}}
buckets:
  patient-records-{suffix}:
    classification: identifying
rules:
  - name: identifying-sovereign
    match: {{classification: identifying}}
    targets: [sovereign, onprem]
    require: [consent_ref, legal_basis]
  - name: everything-else
    targets: sovereign
"""
CONSENT = {
    "x-blindstore-consent-ref": "consent/2026/0042",
    "x-blindstore-legal-basis": "gdpr-9-2-h",
}
FULL = {
    **CONSENT,
    "x-blindstore-origin-system": "PACS-CHU-Nord",
    "x-blindstore-retention-until": "2031-12-31",
}


@pytest.fixture(scope="module")
def pgw(
    openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """A gateway routing by a policy that requires consent for identifying data, with a
    demo.json so that the CLI acts on the same instance."""
    data_dir = tmp_path_factory.mktemp("provenance")
    suffix = secrets.token_hex(3)
    policy = data_dir / "policy.yaml"
    policy.write_text(POLICY.format(root=data_dir, suffix=suffix), encoding="utf-8")
    running = start_cli_gateway(
        data_dir,
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        instance_file="demo.json",
        tenants=("demo",),
        overrides={"placement": {"policy": str(policy)}},
    )
    running.patient_bucket = f"patient-records-{suffix}"  # type: ignore[attr-defined]
    yield running
    running.stop()


@pytest.fixture
def s3(pgw: RunningGateway) -> Any:
    return pgw.client("demo")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"prov-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def patients(pgw: RunningGateway, s3: Any) -> str:
    name: str = pgw.patient_bucket  # type: ignore[attr-defined]
    try:
        s3.create_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise
    return name


def headers(s3: Any, operation: str, extra: Mapping[str, str]) -> Callable[[], None]:
    """Add ``extra`` to the next ``operation`` requests (signed); returns the undo."""

    def add(request: Any, **_kwargs: Any) -> None:
        for name, value in extra.items():
            request.headers[name] = value

    event = f"before-sign.s3.{operation}"
    s3.meta.events.register_first(event, add)
    return lambda: s3.meta.events.unregister(event, add)


def put(s3: Any, bucket: str, key: str, body: bytes, extra: Mapping[str, str], **kw: Any) -> Any:
    undo = headers(s3, "PutObject", extra)
    try:
        return s3.put_object(Bucket=bucket, Key=key, Body=body, **kw)
    finally:
        undo()


def returned(response: Any) -> dict[str, str]:
    sent = response["ResponseMetadata"]["HTTPHeaders"]
    return {name: value for name, value in sent.items() if name.startswith("x-blindstore-")}


def record(gw: RunningGateway, bucket: str, key: str) -> ObjectRecord | None:
    return gw.run(gw.gateway.catalog.get_object(bucket, key))


def blob_files(gw: RunningGateway) -> set[Path]:
    return {p for p in gw.data_dir.rglob("*") if p.is_file() and p.parent.name != "blobs"
            and ("sovereign" in p.parts or "onprem" in p.parts)}  # fmt: skip


# ---------------------------------------------------------------------------- in and out


def test_provenance_headers_are_returned_on_head_and_get(s3: Any, bucket: str, pgw: Any) -> None:
    put(s3, bucket, "scan.dcm", b"pixels", FULL)

    expected = {**FULL, "x-blindstore-retention-until": "2031-12-31T00:00:00Z"}
    assert returned(s3.head_object(Bucket=bucket, Key="scan.dcm")) == expected
    got = s3.get_object(Bucket=bucket, Key="scan.dcm")
    assert returned(got) == expected
    assert got["Body"].read() == b"pixels"
    stored = record(pgw, bucket, "scan.dcm")
    assert stored is not None
    assert stored.provenance == {
        "origin_system": "PACS-CHU-Nord",
        "consent_ref": "consent/2026/0042",
        "legal_basis": "gdpr-9-2-h",
    }


def test_an_object_without_provenance_returns_none(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert returned(s3.head_object(Bucket=bucket, Key="plain")) == {}


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-blindstore-retention-until", "next year"),
        ("x-blindstore-retention-until", "2031-12-31T00:00:00"),
        ("x-blindstore-consent-ref", "x" * 257),
        ("x-blindstore-origin-system", "PACS\tNord"),  # HTTP allows a tab, we do not
    ],
)
def test_invalid_values_are_refused_naming_the_header(
    s3: Any, bucket: str, header: str, value: str, pgw: Any
) -> None:
    with pytest.raises(ClientError) as caught:
        put(s3, bucket, "bad", b"x", {header: value})
    error = caught.value.response["Error"]
    assert (error["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "InvalidArgument",
        400,
    )
    assert header in error["Message"]
    assert record(pgw, bucket, "bad") is None


def test_a_multipart_upload_carries_provenance_to_the_object(s3: Any, bucket: str) -> None:
    undo = headers(s3, "CreateMultipartUpload", FULL)
    try:
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    finally:
        undo()
    part = s3.upload_part(Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=1, Body=b"p1")
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="big",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    shown = returned(s3.head_object(Bucket=bucket, Key="big"))
    assert shown["x-blindstore-consent-ref"] == "consent/2026/0042"
    assert shown["x-blindstore-retention-until"] == "2031-12-31T00:00:00Z"


def test_copy_keeps_the_source_provenance_or_takes_the_request_one(s3: Any, bucket: str) -> None:
    put(s3, bucket, "src", b"copied", FULL)
    source = {"Bucket": bucket, "Key": "src"}

    s3.copy_object(Bucket=bucket, Key="kept", CopySource=source)
    undo = headers(s3, "CopyObject", {"x-blindstore-origin-system": "RIS"})
    try:
        s3.copy_object(Bucket=bucket, Key="ignored", CopySource=source)
        s3.copy_object(
            Bucket=bucket, Key="replaced", CopySource=source, MetadataDirective="REPLACE"
        )
    finally:
        undo()

    expected = {**FULL, "x-blindstore-retention-until": "2031-12-31T00:00:00Z"}
    assert returned(s3.head_object(Bucket=bucket, Key="kept")) == expected
    assert returned(s3.head_object(Bucket=bucket, Key="ignored")) == expected
    assert returned(s3.head_object(Bucket=bucket, Key="replaced")) == {
        "x-blindstore-origin-system": "RIS"
    }
    assert s3.get_object(Bucket=bucket, Key="replaced")["Body"].read() == b"copied"


# ---------------------------------------------------------------------------- required by policy


def test_the_policy_refuses_identifying_data_without_consent(
    s3: Any, patients: str, pgw: RunningGateway
) -> None:
    before = blob_files(pgw)
    with pytest.raises(ClientError) as caught:
        put(s3, patients, "no-consent.dcm", b"pixels", {"x-blindstore-consent-ref": "c-1"})
    error = caught.value.response["Error"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Code"] == "InvalidRequest"
    assert "x-blindstore-legal-basis" in error["Message"]
    assert "identifying-sovereign" in error["Message"]
    assert record(pgw, patients, "no-consent.dcm") is None
    assert blob_files(pgw) == before

    put(s3, patients, "consented.dcm", b"pixels", CONSENT)
    assert s3.get_object(Bucket=patients, Key="consented.dcm")["Body"].read() == b"pixels"
    stored = record(pgw, patients, "consented.dcm")
    assert stored is not None
    assert stored.backends == ("sovereign", "onprem")


def test_the_policy_refuses_a_multipart_upload_without_consent(s3: Any, patients: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.create_multipart_upload(Bucket=patients, Key="big.dcm")
    assert caught.value.response["Error"]["Code"] == "InvalidRequest"
    assert s3.list_multipart_uploads(Bucket=patients).get("Uploads", []) == []


def test_the_policy_refuses_a_copy_of_unconsented_data_into_identifying(
    s3: Any, bucket: str, patients: str
) -> None:
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    with pytest.raises(ClientError) as caught:
        s3.copy_object(Bucket=patients, Key="copied", CopySource={"Bucket": bucket, "Key": "plain"})
    assert caught.value.response["Error"]["Code"] == "InvalidRequest"
    put(s3, bucket, "consented", b"y", CONSENT)
    s3.copy_object(Bucket=patients, Key="copied", CopySource={"Bucket": bucket, "Key": "consented"})
    assert s3.get_object(Bucket=patients, Key="copied")["Body"].read() == b"y"


# ---------------------------------------------------------------------------- retention


def enforce(gw: RunningGateway, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["retention", "enforce", "--data-dir", str(gw.data_dir), *args]
    )
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_retention_enforce_deletes_only_expired_objects(
    s3: Any, bucket: str, pgw: RunningGateway
) -> None:
    until = {"old": "2030-01-01", "older": "2029-06-30T12:00:00Z", "later": "2040-01-01"}
    for key, date in until.items():
        put(s3, bucket, key, key.encode(), {"x-blindstore-retention-until": date})
    s3.put_object(Bucket=bucket, Key="forever", Body=b"forever")
    records = {key: record(pgw, bucket, key) for key in (*until, "forever")}
    files = {
        key: pgw.data_dir / "sovereign" / found.container / found.parts[0].blob
        for key, found in records.items()
        if found is not None
    }
    assert all(path.is_file() for path in files.values())

    dry = enforce(pgw, "--dry-run", "--bucket", bucket, "--now", "2035-01-01")
    assert dry["dry_run"] is True
    assert dry["now"] == "2035-01-01T00:00:00Z"
    assert [(o["key"], o["action"]) for o in dry["objects"]] == [
        ("older", "expired"),
        ("old", "expired"),
    ]
    assert dry["objects"][0]["retention_until"] == "2029-06-30T12:00:00Z"
    assert dry["totals"] == {"expired": 2, "deleted": 0, "skipped": 0, "bytes": 8}
    assert all(path.is_file() for path in files.values())

    done = enforce(pgw, "--tenant", "demo", "--bucket", bucket, "--now", "2035-01-01")
    assert [(o["key"], o["action"]) for o in done["objects"]] == [
        ("older", "deleted"),
        ("old", "deleted"),
    ]
    assert done["totals"]["deleted"] == 2
    # The rows are gone; their blobs wait for the deferred deletion (reads may stream them).
    backend = records["old"].backends[0] if records["old"] is not None else ""
    waiting = pgw.run(pgw.gateway.catalog.deferred_blobs(backend))
    for key, found in records.items():
        assert found is not None
        assert ((found.container, found.parts[0].blob) in waiting) == (key in ("old", "older"))
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="old")
    assert s3.get_object(Bucket=bucket, Key="later")["Body"].read() == b"later"
    assert s3.get_object(Bucket=bucket, Key="forever")["Body"].read() == b"forever"

    again = enforce(pgw, "--bucket", bucket, "--now", "2035-01-01")
    assert again["objects"] == []
    assert again["totals"]["expired"] == 0


def test_retention_enforce_refuses_a_bad_date_or_an_unknown_tenant(pgw: RunningGateway) -> None:
    runner = CliRunner()
    common = ["retention", "enforce", "--data-dir", str(pgw.data_dir)]
    bad_date = runner.invoke(app, [*common, "--now", "soon"])
    assert bad_date.exit_code == 2
    assert "--now" in bad_date.output
    unknown = runner.invoke(app, [*common, "--tenant", "nobody"])
    assert unknown.exit_code == 2
    assert "no tenant named 'nobody'" in unknown.output
    assert unknown.stdout == ""
