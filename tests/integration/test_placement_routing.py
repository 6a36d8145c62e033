"""A gateway routing by the demo placement policy over real stand-ins: where each object's
ciphertext physically is, what an outage of one provider does, and how `repair` heals it.

Backends (as in deploy/policy.demo.yaml): sovereign-disk (a local directory), onprem-s3
(SeaweedFS), aws (a moto started for this test, so it can be stopped), azure (Azurite) and gcs
(gcp-storage-emulator). Each is read through its own SDK or directory, not through the gateway.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from azure.storage.blob import BlobServiceClient
from botocore.config import Config
from botocore.exceptions import ClientError

from blindstore.catalog.base import ObjectRecord
from blindstore.devtools.azurite import AzuriteServer
from blindstore.devtools.gcs_emulator import GcsEmulator
from blindstore.devtools.moto import MotoServer, start_moto
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.devtools.seaweedfs import SeaweedFSServer
from blindstore.maintenance import repair_replicas
from tests.gwserver import RunningGateway, start_gateway
from tests.services.azurite import azurite_server  # noqa: F401
from tests.services.gcs_emulator import PROJECT, emulator_client, gcs_emulator  # noqa: F401
from tests.services.seaweedfs import seaweedfs  # noqa: F401

DEMO = Path(__file__).parents[2] / "deploy" / "policy.demo.yaml"
BACKENDS = ("sovereign-disk", "onprem-s3", "aws", "azure", "gcs")


def _s3(endpoint: str, access_key: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


class Stands:
    """Each backend's stand-in, and what it holds, read behind the gateway's back."""

    def __init__(
        self,
        tmp_path: Path,
        seaweed: SeaweedFSServer,
        moto: MotoServer,
        azurite: AzuriteServer,
        gcs: GcsEmulator,
    ) -> None:
        self.prefix = f"p{secrets.token_hex(3)}-"
        self.disk = tmp_path / "sovereign"
        self.seaweed, self.moto, self.azurite, self.gcs = seaweed, moto, azurite, gcs

    def settings(self) -> dict[str, dict[str, Any]]:
        s3_common = {"bucket_prefix": self.prefix, "addressing_style": "path"}
        return {
            "sovereign-disk": {"path": str(self.disk)},
            "onprem-s3": {
                "endpoint_url": self.seaweed.endpoint_url,
                "access_key": self.seaweed.access_key,
                "secret_key": self.seaweed.secret_key,
                **s3_common,
            },
            "aws": {
                "endpoint_url": self.moto.endpoint_url,
                "access_key": self.moto.access_key,
                "secret_key": self.moto.secret_key,
                "region": "eu-west-3",
                **s3_common,
            },
            "azure": {
                "connection_string": self.azurite.connection_string,
                "container_prefix": self.prefix,
            },
            "gcs": {
                "endpoint_url": self.gcs.endpoint_url,
                "project": PROJECT,
                "bucket_prefix": self.prefix,
            },
        }

    def write_policy(self, path: Path) -> Path:
        policy = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
        for name, settings in self.settings().items():
            policy["backends"][name]["settings"] = settings
        path.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
        return path

    def blobs(self, backend: str, container: str) -> set[str]:
        """Every blob id ``backend`` holds in ``container``."""
        if backend == "sovereign-disk":
            root = self.disk / container
            found = root.rglob("*") if root.is_dir() else iter(())
            return {str(p.relative_to(root)) for p in found if p.is_file() and ".tmp" not in p.name}
        if backend in ("onprem-s3", "aws"):
            server = self.seaweed if backend == "onprem-s3" else self.moto
            client = _s3(server.endpoint_url, server.access_key, server.secret_key)
            try:
                listed = client.list_objects_v2(Bucket=self.prefix + container)
            except ClientError:
                return set()
            return {item["Key"] for item in listed.get("Contents", [])}
        if backend == "azure":
            service = BlobServiceClient.from_connection_string(self.azurite.connection_string)
            box = service.get_container_client(self.prefix + container)
            return {b.name for b in box.list_blobs()} if box.exists() else set()
        bucket = emulator_client(self.gcs).lookup_bucket(self.prefix + container)
        return set() if bucket is None else {b.name for b in bucket.list_blobs()}

    def holders(self, record: ObjectRecord) -> set[str]:
        """The backends physically holding every part of ``record``."""
        wanted = {part.blob for part in record.parts}
        return {name for name in BACKENDS if wanted <= self.blobs(name, record.container)}


@pytest.fixture
def aws() -> Iterator[MotoServer]:
    """A moto of this test's own, which the test may stop (the session's one stays up)."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def routed(
    tmp_path: Path,
    openbao: OpenBaoServer,
    seaweedfs: SeaweedFSServer,  # noqa: F811 - the fixtures imported above
    aws: MotoServer,
    azurite: AzuriteServer,
    gcs_emulator: GcsEmulator,  # noqa: F811
) -> Iterator[tuple[RunningGateway, Stands]]:
    stands = Stands(tmp_path, seaweedfs, aws, azurite, gcs_emulator)
    policy = stands.write_policy(tmp_path / "policy.yaml")
    gw = start_gateway(
        tmp_path / "gw",
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        tenants=("demo",),
        overrides={"placement": {"policy": str(policy)}},
    )
    yield gw, stands
    gw.stop()


def _consent(request: Any, **_kwargs: Any) -> None:
    """Sign every PutObject with the provenance the demo policy requires of identifying data."""
    request.headers["x-blindstore-consent-ref"] = "consent/2026/0001"
    request.headers["x-blindstore-legal-basis"] = "gdpr-9-2-h"


def _record(gw: RunningGateway, bucket: str, key: str) -> ObjectRecord:
    found = gw.run(gw.gateway.catalog.get_object(bucket, key))
    assert found is not None
    return found


def test_objects_land_exactly_where_their_classification_rule_says(
    routed: tuple[RunningGateway, Stands],
) -> None:
    gw, stands = routed
    s3 = gw.client("demo")
    for bucket in ("patient-records", "research-exports", "misc"):
        s3.create_bucket(Bucket=bucket)
    bodies = {key: os.urandom(50_000) for key in ("id", "pseudo", "plain", "tagged", "header")}
    # The demo policy requires a consent reference and a legal basis for identifying data.
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="patient-records", Key="id", Body=bodies["id"])
    assert refused.value.response["Error"]["Code"] == "InvalidRequest"
    assert gw.run(gw.gateway.catalog.get_object("patient-records", "id")) is None
    tenant = gw.run(gw.gateway.catalog.get_tenant_by_name("demo"))
    assert tenant is not None
    assert not any(stands.blobs(name, tenant.container) for name in BACKENDS)
    s3.meta.events.register_first("before-sign.s3.PutObject", _consent)
    s3.put_object(Bucket="patient-records", Key="id", Body=bodies["id"])
    s3.put_object(Bucket="research-exports", Key="pseudo", Body=bodies["pseudo"])
    s3.put_object(Bucket="misc", Key="plain", Body=bodies["plain"])
    s3.put_object(
        Bucket="misc", Key="tagged", Body=bodies["tagged"], Tagging="classification=pseudonymized"
    )
    s3.put_object(
        Bucket="misc",
        Key="header",
        Body=bodies["header"],
        Metadata={"classification": "identifying"},
    )
    s3.meta.events.unregister("before-sign.s3.PutObject", _consent)

    where = {
        key: _record(gw, bucket, key)
        for bucket, key in [
            ("patient-records", "id"),
            ("research-exports", "pseudo"),
            ("misc", "plain"),
            ("misc", "tagged"),
            ("misc", "header"),
        ]
    }
    expected = {
        "id": ("sovereign-disk", "onprem-s3"),
        "header": ("sovereign-disk", "onprem-s3"),
        "pseudo": ("sovereign-disk", "aws"),
        "tagged": ("sovereign-disk", "aws"),
        "plain": ("aws", "azure", "gcs"),
    }
    for key, record in where.items():
        assert (record.backends, record.repairs) == (expected[key], ())
        assert stands.holders(record) == set(expected[key]), key
    assert s3.get_object(Bucket="misc", Key="header")["Body"].read() == bodies["header"]


def test_an_outage_fails_writes_without_a_quorum_and_repair_heals_the_rest(
    routed: tuple[RunningGateway, Stands],
) -> None:
    gw, stands = routed
    s3 = gw.client("demo")
    s3.create_bucket(Bucket="research-exports")
    s3.create_bucket(Bucket="misc")
    before = os.urandom(200_000)
    s3.put_object(Bucket="misc", Key="before", Body=before)
    container = _record(gw, "misc", "before").container
    on_disk = stands.blobs("sovereign-disk", container)

    port = int(stands.moto.endpoint_url.rsplit(":", 1)[1])
    stands.moto.stop()

    # pseudonymized: sovereign-disk + aws, both required.
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="research-exports", Key="refused", Body=b"x" * 1000)
    assert info.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert gw.run(gw.gateway.catalog.get_object("research-exports", "refused")) is None
    assert stands.blobs("sovereign-disk", container) == on_disk
    # unclassified: two of aws, azure, gcs.
    during = os.urandom(30_000)
    s3.put_object(Bucket="misc", Key="during", Body=during)
    record = _record(gw, "misc", "during")
    assert (record.backends, record.repairs) == (("azure", "gcs"), ("aws",))
    # aws is the first replica of "before": the read fails over, the client notices nothing.
    assert s3.get_object(Bucket="misc", Key="before")["Body"].read() == before
    ranged = s3.get_object(Bucket="misc", Key="before", Range="bytes=70000-150000")
    assert ranged["Body"].read() == before[70000:150001]

    stands.moto = start_moto(port=port)  # back, empty (moto keeps nothing across restarts)
    try:
        report = gw.run(repair_replicas(gw.gateway))
        repaired = _record(gw, "misc", "during")

        assert (report.objects, report.repaired, report.failed) == (1, 1, 0)
        assert (repaired.backends, repaired.repairs) == (("azure", "gcs", "aws"), ())
        assert stands.holders(repaired) == {"azure", "gcs", "aws"}
        assert s3.get_object(Bucket="misc", Key="during")["Body"].read() == during
    finally:
        stands.moto.stop()
