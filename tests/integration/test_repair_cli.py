"""`blindstore repair` on a data directory: replicas that missed a write are completed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from typer.testing import CliRunner

from blindstore import provision, runtime
from blindstore.audit.events import AuditFilter
from blindstore.catalog.base import ObjectRecord
from blindstore.cli.main import app, dev_settings
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.gateway import Principal, WriteMeta
from blindstore.s3.checksums import BodyVerifier
from blindstore.server.wire import VerifiedBody
from tests.gwserver import write_instance_file

POLICY = """\
version: 1
backends:
  first:
    kind: local
    provider: Hôpital Nord
    jurisdiction: EEA
    settings: {{path: "{root}/first"}}
  second:
    kind: local
    provider: Hôpital Nord
    jurisdiction: EEA
    settings: {{path: "{root}/second"}}
rules:
  - name: both
    targets: [first, second]
    write_quorum: 1
"""


async def _body() -> AsyncIterator[bytes]:
    yield b"replicate me"


def test_repair_command_completes_a_missed_replica(openbao: OpenBaoServer, tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    data_dir.mkdir()
    (data_dir / "policy.yaml").write_text(POLICY.format(root=data_dir), encoding="utf-8")
    write_instance_file(
        data_dir, vault_addr=openbao.addr, vault_token=openbao.token, name="demo.json"
    )
    settings = dev_settings(
        data_dir,
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        policy=data_dir / "policy.yaml",
    )

    async def write_with_a_missed_replica() -> ObjectRecord:
        async with runtime.open_gateway(settings) as gateway:
            made = await provision.create_tenant(gateway.catalog, gateway.keys, "demo")
            principal = Principal(made.access_key_id, made.tenant)
            await gateway.create_bucket(principal, "scans", "us-east-1")
            record = await gateway.put_object(
                principal,
                "scans",
                "k",
                _body(),
                VerifiedBody(BodyVerifier()),
                WriteMeta(),  # type: ignore[arg-type]
            )
            # Stand for a write that reached only `first`: drop the copy on `second`.
            await gateway.backends["second"].delete(record.container, record.parts[0].blob)
            await gateway.catalog.set_replicas(
                "scans", "k", record.object_id, ("first",), ("second",)
            )
            return record

    record = anyio.run(write_with_a_missed_replica)
    blob = data_dir / "second" / record.container / record.parts[0].blob
    assert not blob.exists()

    result = CliRunner().invoke(app, ["repair", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["repaired"] == 1
    assert report["failed"] == 0
    assert (
        blob.read_bytes()
        == (data_dir / "first" / record.container / record.parts[0].blob).read_bytes()
    )

    again = CliRunner().invoke(app, ["repair", "--data-dir", str(data_dir)])
    assert again.exit_code == 0
    assert json.loads(again.stdout[again.stdout.index("{") :])["objects"] == 0

    async def repair_records() -> list[tuple[str, str, dict[str, object]]]:
        catalog = runtime.open_catalog(settings)
        try:
            found = await catalog.query_audit(AuditFilter(operation="repair"), limit=10)
        finally:
            await catalog.close()
        return [(r.event.principal, r.event.result, dict(r.event.detail)) for r in found]

    runs = anyio.run(repair_records)
    assert len(runs) == 2  # each run is on the audit trail, newest first
    assert all(principal.startswith("os:") for principal, _result, _detail in runs)
    assert runs[-1][2]["repaired"] == 1
