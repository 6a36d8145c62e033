"""Transparency records against a gateway routing by a placement policy over two local disks and
an S3 stand-in (moto): each record names exactly the backends that physically hold the object's
blobs (read behind the gateway's back), its key custodian is the catalog's and OpenBao's, its
rule and reasons are `policy explain`'s, and the bucket and tenant summaries add up."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from blindstore.catalog.base import ObjectRecord
from blindstore.cli.main import app
from blindstore.devtools.moto import MotoServer
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.errors import NoSuchBucket, NoSuchKey, NoSuchTenant
from blindstore.policy import HdsActivity, ObjectFacts, explain, load_file
from blindstore.subjects import SUBJECT_HEADER
from blindstore.transparency import (
    TransparencyRecord,
    bucket_summary,
    object_transparency,
    tenant_summary,
)
from tests.gwserver import RunningGateway, start_gateway
from tests.services.moto import moto_server  # noqa: F401

BACKENDS = ("disk-a", "disk-b", "cloud")


def _policy(disk_a: Path, disk_b: Path, moto: MotoServer, prefix: str) -> dict[str, Any]:
    carried = {a.value: "Hospital" for a in HdsActivity}
    return {
        "version": 1,
        "backends": {
            "disk-a": {
                "kind": "local",
                "provider": "Hospital",
                "country": "FR",
                "jurisdiction": "EEA",
                "certifications": ["HDS"],
                "hds_activities": carried,
                "settings": {"path": str(disk_a)},
            },
            "disk-b": {
                "kind": "local",
                "provider": "Hospital",
                "country": "FR",
                "jurisdiction": "EEA",
                "certifications": ["HDS", "ISO27001"],
                "hds_activities": carried,
                "settings": {"path": str(disk_b)},
            },
            "cloud": {
                "kind": "s3",
                "provider": "Cloud <Inc>",
                "region": "eu-west-3",
                "jurisdiction": "EEA",
                "certifications": ["ISO27001"],
                "hds_activities": {"physical_sites": "Cloud <Inc>", "hardware": "Cloud <Inc>"},
                "settings": {
                    "endpoint_url": moto.endpoint_url,
                    "access_key": moto.access_key,
                    "secret_key": moto.secret_key,
                    "region": "eu-west-3",
                    "bucket_prefix": prefix,
                    "addressing_style": "path",
                },
            },
        },
        "buckets": {"records": {"classification": "identifying"}},
        "constraints": [
            {"classification": "identifying", "require": {"certifications": ["HDS"]}},
        ],
        "rules": [
            {
                "name": "identifying-at-home",
                "description": "Identifying data stays on the hospital's disks.",
                "match": {"classification": "identifying"},
                "targets": ["disk-a", "disk-b"],
                "write_quorum": 2,
            },
            {"name": "rest", "targets": ["disk-b", "cloud"], "write_quorum": 2},
        ],
    }


class Place:
    """The gateway, its policy file, and each backend's blobs read directly."""

    def __init__(self, gw: RunningGateway, policy: Path, tmp: Path, moto: MotoServer, prefix: str):
        self.gw, self.policy_path, self.moto, self.prefix = gw, policy, moto, prefix
        self.disks = {"disk-a": tmp / "disk-a", "disk-b": tmp / "disk-b"}

    def blobs(self, backend: str, container: str) -> set[str]:
        if backend in self.disks:
            root = self.disks[backend] / container
            found = root.rglob("*") if root.is_dir() else iter(())
            return {str(p.relative_to(root)) for p in found if p.is_file() and ".tmp" not in p.name}
        client = boto3.client(
            "s3",
            endpoint_url=self.moto.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.moto.access_key,
            aws_secret_access_key=self.moto.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        try:
            listed = client.list_objects_v2(Bucket=self.prefix + container)
        except ClientError:
            return set()
        return {item["Key"] for item in listed.get("Contents", [])}

    def holders(self, record: ObjectRecord) -> set[str]:
        """The backends physically holding every part of ``record``."""
        wanted = {part.blob for part in record.parts}
        return {name for name in BACKENDS if wanted <= self.blobs(name, record.container)}

    def record(self, bucket: str, key: str) -> ObjectRecord:
        found = self.gw.run(self.gw.gateway.catalog.get_object(bucket, key))
        assert found is not None
        return found

    def transparency(self, bucket: str, key: str, **kw: Any) -> TransparencyRecord:
        gw = self.gw
        return gw.run(object_transparency(gw.gateway, gw.settings, bucket, key, **kw))


@pytest.fixture(scope="module")
def place(
    openbao: OpenBaoServer,
    moto_server: MotoServer,  # noqa: F811 - the fixture imported above
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Place]:
    tmp = tmp_path_factory.mktemp("transparency")
    prefix = f"t{secrets.token_hex(3)}-"
    policy = tmp / "policy.yaml"
    document = _policy(tmp / "disk-a", tmp / "disk-b", moto_server, prefix)
    policy.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    gw = start_gateway(
        tmp / "gw",
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        tenants=("demo", "other"),
        overrides={"placement": {"policy": str(policy)}},
    )
    yield Place(gw, policy, tmp, moto_server, prefix)
    gw.stop()


@pytest.fixture(scope="module")
def written(place: Place) -> dict[str, tuple[str, str]]:
    """Objects of tenant demo in two buckets, placed by each rule; name -> (bucket, key)."""
    s3 = place.gw.client("demo")
    for bucket in ("records", "misc"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="records", Key="scan.dcm", Body=os.urandom(40_000))
    s3.put_object(
        Bucket="misc",
        Key="note.txt",
        Body=b"n" * 1000,
        ContentType="text/plain",
        Tagging="team=research",
    )
    s3.put_object(
        Bucket="misc", Key="flagged", Body=b"f" * 3000, Metadata={"classification": "identifying"}
    )

    def add_subject(request: Any, **_kwargs: Any) -> None:
        request.headers[SUBJECT_HEADER] = "patient-42"

    s3.meta.events.register_first("before-sign.s3.PutObject", add_subject)
    try:
        s3.put_object(Bucket="records", Key="patient.dcm", Body=b"p" * 5000)
    finally:
        s3.meta.events.unregister("before-sign.s3.PutObject", add_subject)
    upload = s3.create_multipart_upload(Bucket="misc", Key="big.bin")["UploadId"]
    parts = []
    for number in (1, 2):
        body = os.urandom(5 * 1024 * 1024 if number == 1 else 1000)
        etag = s3.upload_part(
            Bucket="misc", Key="big.bin", UploadId=upload, PartNumber=number, Body=body
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(
        Bucket="misc", Key="big.bin", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    return {
        "scan": ("records", "scan.dcm"),
        "patient": ("records", "patient.dcm"),
        "note": ("misc", "note.txt"),
        "flagged": ("misc", "flagged"),
        "big": ("misc", "big.bin"),
    }


def test_replicas_are_exactly_the_backends_that_physically_hold_the_blobs(
    place: Place, written: dict[str, tuple[str, str]]
) -> None:
    expected = {
        "scan": {"disk-a", "disk-b"},
        "patient": {"disk-a", "disk-b"},
        "flagged": {"disk-a", "disk-b"},
        "note": {"disk-b", "cloud"},
        "big": {"disk-b", "cloud"},
    }
    for name, (bucket, key) in written.items():
        seen = place.transparency(bucket, key)
        replicas = {r.backend.name for r in seen.replicas}
        assert replicas == place.holders(place.record(bucket, key)) == expected[name], name
        assert all(r.status == "stored" for r in seen.replicas)
        assert all(r.backend.declared for r in seen.replicas)


def test_each_replica_carries_its_declared_facts_and_hds_carriers(
    place: Place, written: dict[str, tuple[str, str]]
) -> None:
    seen = place.transparency(*written["note"])
    cloud = next(r.backend for r in seen.replicas if r.backend.name == "cloud")

    assert (cloud.kind, cloud.provider, cloud.region, cloud.jurisdiction) == (
        "s3",
        "Cloud <Inc>",
        "eu-west-3",
        "EEA",
    )
    assert cloud.certifications == ["ISO27001"]
    assert cloud.hds_activities[HdsActivity.HARDWARE] == "Cloud <Inc>"
    assert cloud.hds_activities[HdsActivity.BACKUP] is None
    assert cloud.uncarried_activities == [
        HdsActivity.VIRTUAL_INFRASTRUCTURE,
        HdsActivity.APPLICATION_PLATFORM,
        HdsActivity.ADMINISTRATION_OPERATION,
        HdsActivity.BACKUP,
    ]
    assert seen.content_type == "text/plain"
    assert seen.tags == {"team": "research"}
    assert seen.size == 1000
    assert seen.provenance == {}
    assert seen.retention_until is None


def test_the_key_custodian_is_the_catalog_rows_and_exists_in_openbao(
    place: Place, openbao: OpenBaoServer, written: dict[str, tuple[str, str]]
) -> None:
    gw = place.gw
    tenant = gw.run(gw.gateway.catalog.get_tenant_by_name("demo"))
    assert tenant is not None
    for name, (bucket, key) in written.items():
        row = place.record(bucket, key)
        custodian = place.transparency(bucket, key).key_custodian

        assert custodian.vault_addr == openbao.addr
        assert custodian.transit_mount == "transit"
        assert (custodian.key_name, custodian.key_version) == (row.key_name, row.key_version)
        assert custodian.wrapping == "transit"
        assert not custodian.shredded
        assert custodian.scope == ("data_subject" if name == "patient" else "tenant"), name
        if custodian.scope == "tenant":
            assert custodian.key_name == tenant.key_name
        info = openbao.request("GET", f"transit/keys/{custodian.key_name}")["data"]
        assert isinstance(info, dict)
        assert 1 <= custodian.key_version <= info["latest_version"]


def test_the_rule_and_reasons_are_those_of_policy_explain(
    place: Place, written: dict[str, tuple[str, str]]
) -> None:
    policy = load_file(place.policy_path)
    for name, (bucket, key) in written.items():
        row = place.record(bucket, key)
        seen = place.transparency(bucket, key)
        assert seen.placement is not None
        facts = ObjectFacts(
            tenant="demo",
            bucket=bucket,
            key=key,
            tags=row.tags,
            classification=row.user_metadata.get("classification"),
            # A multipart upload is placed before its size is known.
            size=None if name == "big" else row.size,
            content_type=row.headers.get("content-type"),
        )
        expected = explain(policy, facts)
        assert seen.placement.rule == expected.matched.rule.name, name
        assert seen.placement.reasons == list(expected.placement.reasons)
        assert seen.placement.targets == list(expected.placement.targets)
        assert seen.placement.matches_current
        assert seen.placement.size_known == (name != "big")
    flagged = place.transparency(*written["flagged"])
    assert flagged.placement is not None
    assert flagged.placement.classification_source == "header"
    assert flagged.classification_header == "identifying"
    assert flagged.placement.description == "Identifying data stays on the hospital's disks."


def test_summaries_add_up_per_backend_provider_and_jurisdiction(
    place: Place, written: dict[str, tuple[str, str]]
) -> None:
    gw = place.gw
    rows = {name: place.record(*where) for name, where in written.items()}
    misc = gw.run(bucket_summary(gw.gateway, gw.settings, "misc"))
    demo = gw.run(tenant_summary(gw.gateway, gw.settings, "demo"))

    in_misc = [r for r in rows.values() if r.bucket == "misc"]
    assert (misc.scope, misc.tenant, misc.bucket) == ("bucket", "demo", "misc")
    assert misc.objects == len(in_misc)
    assert misc.bytes == sum(r.size for r in in_misc)
    assert (demo.scope, demo.bucket, demo.objects) == ("tenant", None, len(rows))
    assert demo.bytes == sum(r.size for r in rows.values())
    for summary, counted in ((misc, in_misc), (demo, list(rows.values()))):
        per_backend = {u.backend.name: (u.objects, u.bytes) for u in summary.backends}
        assert per_backend == {
            name: (
                sum(1 for r in counted if name in r.backends),
                sum(r.size for r in counted if name in r.backends),
            )
            for name in BACKENDS
            if any(name in r.backends for r in counted)
        }
        providers = {u.name: (u.objects, u.bytes) for u in summary.providers}
        on_cloud = [r for r in counted if "cloud" in r.backends]
        assert providers["Hospital"] == (len(counted), sum(r.size for r in counted))
        if on_cloud:
            assert providers["Cloud <Inc>"] == (len(on_cloud), sum(r.size for r in on_cloud))
        assert {u.name: u.objects for u in summary.jurisdictions} == {"EEA": len(counted)}
        assert summary.pending_repair_objects == 0
    other = gw.run(tenant_summary(gw.gateway, gw.settings, "other"))
    assert (other.objects, other.backends, other.providers) == (0, [], [])


def test_lookups_are_scoped_to_the_owner_and_report_missing_things(
    place: Place, written: dict[str, tuple[str, str]]
) -> None:
    gw = place.gw
    bucket, key = written["scan"]

    assert place.transparency(bucket, key, tenant="demo").tenant == "demo"
    with pytest.raises(NoSuchBucket):
        place.transparency(bucket, key, tenant="other")
    with pytest.raises(NoSuchKey):
        place.transparency(bucket, "absent")
    with pytest.raises(NoSuchBucket):
        gw.run(bucket_summary(gw.gateway, gw.settings, bucket, tenant="other"))
    with pytest.raises(NoSuchTenant):
        gw.run(tenant_summary(gw.gateway, gw.settings, "nobody"))


def _cli(place: Place, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    config = tmp_path / "blindstore.yaml"
    settings = place.gw.settings.model_dump(mode="json", exclude={"vault", "admin"})
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    result = CliRunner().invoke(app, ["transparency", *args, "--config", str(config)])
    return result.exit_code, result.stdout, result.stderr


def test_the_command_prints_the_record_and_the_summaries(
    place: Place, written: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    code, out, err = _cli(place, tmp_path, *written["note"], "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["schema"] == "blindstore.transparency/1"
    assert {r["backend"]["name"] for r in document["replicas"]} == {"disk-b", "cloud"}

    code, out, err = _cli(place, tmp_path, *written["note"])
    assert code == 0, err
    assert "Cloud <Inc>" in out
    assert "rule rest" in out

    code, out, err = _cli(place, tmp_path, "--tenant", "demo", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["schema"] == "blindstore.transparency-summary/1"
    assert json.loads(out)["objects"] == len(written)
    code, out, err = _cli(place, tmp_path, "--bucket", "misc")
    assert code == 0, err
    assert "Per jurisdiction" in out
    assert "disk-b" in out
    assert "Cloud <Inc>" in out

    code, _, err = _cli(place, tmp_path, "misc", "absent")
    assert code == 2
    assert "does not exist" in err
    code, _, _ = _cli(place, tmp_path, "misc")
    assert code == 2


def test_a_policy_change_shows_as_a_placement_that_no_longer_matches(
    place: Place, written: dict[str, tuple[str, str]]
) -> None:
    """Runs last: it reloads the gateway's policy (and puts the original back)."""
    gw = place.gw
    original = place.policy_path.read_text(encoding="utf-8")
    changed: dict[str, Any] = yaml.safe_load(original)
    del changed["backends"]["cloud"]
    changed["rules"] = [{"name": "home-only", "targets": ["disk-a", "disk-b"], "write_quorum": 2}]
    reload: Callable[[], bool] | None = gw.gateway.reload_placement
    assert reload is not None
    place.policy_path.write_text(yaml.safe_dump(changed, allow_unicode=True), encoding="utf-8")
    try:
        assert reload()
        seen = place.transparency(*written["note"])
    finally:
        place.policy_path.write_text(original, encoding="utf-8")
        assert reload()

    assert seen.placement is not None
    assert seen.placement.rule == "home-only"
    assert not seen.placement.matches_current
    assert seen.placement.missing_targets == ["disk-a"]
    assert seen.placement.extra_backends == ["cloud"]
    cloud = next(r.backend for r in seen.replicas if r.backend.name == "cloud")
    assert not cloud.declared
    assert (cloud.kind, cloud.provider, cloud.jurisdiction) == ("unknown", None, None)
