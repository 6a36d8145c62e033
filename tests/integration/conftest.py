"""Integration fixtures: one gateway (uvicorn + real OpenBao) per test session."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from blindstore.devtools.openbao import OpenBaoServer
from tests.gwserver import RunningGateway, start_gateway
from tests.integration.keycli import lifecycle_gw  # noqa: F401 (a fixture, module-scoped)


@pytest.fixture(scope="session")
def gw(
    openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    running = start_gateway(
        tmp_path_factory.mktemp("gateway"), vault_addr=openbao.addr, vault_token=openbao.token
    )
    yield running
    running.stop()


@pytest.fixture
def s3(gw: RunningGateway) -> Any:
    """boto3 client of tenant "demo"."""
    return gw.client("demo")


@pytest.fixture
def s3_other(gw: RunningGateway) -> Any:
    """boto3 client of tenant "other"."""
    return gw.client("other")


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A fresh bucket of tenant "demo", emptied and removed afterwards."""
    name = f"test-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=name)
