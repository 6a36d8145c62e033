"""The gateway served over a cloud backend chosen in its settings (`storage.backend`).

Each test starts a gateway whose only backend is an S3 stand-in (moto for AWS, SeaweedFS for an
on-premise S3), drives it with boto3 as a client would, and then looks at what the stand-in holds.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from blindstore.devtools.moto import MotoServer
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.devtools.seaweedfs import SeaweedFSServer
from tests.gwserver import RunningGateway, start_gateway
from tests.services.moto import moto_server  # noqa: F401
from tests.services.seaweedfs import seaweedfs  # noqa: F401

MiB = 1024 * 1024


def _direct(endpoint: str, access_key: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def _gateway(
    tmp_path: Path, openbao: OpenBaoServer, name: str, settings: dict[str, Any]
) -> RunningGateway:
    return start_gateway(
        tmp_path / "gw",
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        tenants=("demo",),
        overrides={"storage": {"backend": "s3", "name": name, "settings": settings}},
    )


@pytest.fixture
def on_moto(
    openbao: OpenBaoServer,
    moto_server: MotoServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> Iterator[tuple[RunningGateway, Any, str]]:
    prefix = f"t{secrets.token_hex(3)}-"
    gw = _gateway(
        tmp_path,
        openbao,
        "aws",
        {
            "endpoint_url": moto_server.endpoint_url,
            "access_key": moto_server.access_key,
            "secret_key": moto_server.secret_key,
            "bucket_prefix": prefix,
        },
    )
    yield (
        gw,
        _direct(moto_server.endpoint_url, moto_server.access_key, moto_server.secret_key),
        prefix,
    )
    gw.stop()


@pytest.fixture
def on_seaweedfs(
    openbao: OpenBaoServer,
    seaweedfs: SeaweedFSServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> Iterator[tuple[RunningGateway, Any, str]]:
    prefix = f"t{secrets.token_hex(3)}-"
    gw = _gateway(
        tmp_path,
        openbao,
        "onprem",
        {
            "endpoint_url": seaweedfs.endpoint_url,
            "access_key": seaweedfs.access_key,
            "secret_key": seaweedfs.secret_key,
            "bucket_prefix": prefix,
            "addressing_style": "path",
            "part_size": 5 * MiB,
        },
    )
    yield gw, _direct(seaweedfs.endpoint_url, seaweedfs.access_key, seaweedfs.secret_key), prefix
    gw.stop()


def _round_trip(gw: RunningGateway, direct: Any, prefix: str, size: int) -> None:
    s3 = gw.client("demo")
    s3.create_bucket(Bucket="patient-scans")
    body = os.urandom(size)
    s3.put_object(
        Bucket="patient-scans",
        Key="DUPONT_Jean/IRM.dcm",
        Body=body,
        Metadata={"diagnosis": "CANARY-diagnosis"},
    )
    got = s3.get_object(Bucket="patient-scans", Key="DUPONT_Jean/IRM.dcm")
    assert got["Body"].read() == body
    ranged = s3.get_object(
        Bucket="patient-scans", Key="DUPONT_Jean/IRM.dcm", Range="bytes=100-20000"
    )
    assert ranged["Body"].read() == body[100:20001]

    record = gw.run(gw.gateway.catalog.get_object("patient-scans", "DUPONT_Jean/IRM.dcm"))
    assert record is not None
    assert record.backends == (gw.settings.storage.name,)
    # What the provider holds: one bucket of ours, opaque names, ciphertext, no metadata.
    ours = [b["Name"] for b in direct.list_buckets()["Buckets"] if b["Name"].startswith(prefix)]
    assert ours == [prefix + record.container]
    keys = [o["Key"] for o in direct.list_objects_v2(Bucket=ours[0])["Contents"]]
    assert keys == [record.parts[0].blob]
    head = direct.head_object(Bucket=ours[0], Key=keys[0])
    assert head["Metadata"] == {}
    assert head["ContentType"] == "application/octet-stream"
    stored = direct.get_object(Bucket=ours[0], Key=keys[0])["Body"].read()
    assert body[:64] not in stored
    assert b"DUPONT" not in stored
    assert b"CANARY" not in stored


def test_a_gateway_on_aws_s3_stores_only_ciphertext_under_opaque_names(
    on_moto: tuple[RunningGateway, Any, str],
) -> None:
    _round_trip(*on_moto, size=100_000)


def test_a_gateway_on_an_on_premise_s3_streams_large_objects(
    on_seaweedfs: tuple[RunningGateway, Any, str],
) -> None:
    """12 MiB: the gateway streams it and the backend uploads it as S3 multipart (5 MiB parts)."""
    _round_trip(*on_seaweedfs, size=12 * MiB)


def test_unknown_storage_settings_are_refused_at_startup(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="invalid settings"):
        _gateway(tmp_path, openbao, "aws", {"endpoint": "http://typo"})
