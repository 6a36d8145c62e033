"""A gateway whose data directory the ``blindstore keys`` commands can act on, and a runner."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from blindstore.catalog.base import ObjectRecord
from blindstore.cli.main import app
from blindstore.devtools.openbao import OpenBaoServer
from tests.gwserver import RunningGateway, start_cli_gateway

#: Small pools so that PUTs after a rotation soon use the new key version; fast revocations.
KEY_SETTINGS = {"pool_size": 2, "revocation_refresh_seconds": 0.2}


@pytest.fixture(scope="module")
def lifecycle_gw(
    openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """A gateway of this module's own (tests shred its tenants), with a dev.json for the CLI."""
    running = start_cli_gateway(
        tmp_path_factory.mktemp("lifecycle"),
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        tenants=(),
        overrides={"keys": KEY_SETTINGS},
    )
    yield running
    running.stop()


def keys_cli(gw: RunningGateway, *args: str, expect: int = 0, stdin: str | None = None) -> Any:
    """Run ``blindstore keys ARGS --data-dir <gateway's>``; its JSON output (or the Result)."""
    result: Result = CliRunner().invoke(
        app, ["keys", *args, "--data-dir", str(gw.data_dir)], input=stdin
    )
    assert result.exit_code == expect, result.output + repr(result.exception)
    try:
        return json.loads(result.stdout)
    except ValueError:
        return result


def fresh_tenant(gw: RunningGateway) -> tuple[str, Any, str]:
    """A new tenant: (name, its boto3 client, a bucket of it)."""
    name = f"t-{secrets.token_hex(4)}"
    gw.add_tenant(name)
    client = gw.client(name)
    bucket = f"b-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=bucket)
    return name, client, bucket


def record(gw: RunningGateway, bucket: str, key: str) -> ObjectRecord:
    found = gw.run(gw.gateway.catalog.get_object(bucket, key))
    assert found is not None
    return found


def forget_cached_keys(gw: RunningGateway) -> None:
    """Drop every cached DEK, so that the next read unwraps through Transit again."""

    async def clear() -> None:
        gw.gateway.keys.cache.clear()  # type: ignore[attr-defined]

    gw.run(clear())
