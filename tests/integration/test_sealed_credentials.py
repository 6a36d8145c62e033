"""S3 secret keys at rest: sealed in the catalog, never in clear (issue 9, H2).

A copy of the catalog (SQLite file and its write-ahead log, PostgreSQL rows) or of its backups
must not give any tenant's credentials: they would make the gateway a decryption oracle. A
catalog written before sealed secrets is sealed when the gateway starts, or by
``blindstore access-keys seal``, and its keys keep working.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
from pathlib import Path

import anyio
import boto3
from alembic import command
from botocore.config import Config
from sqlalchemy import create_engine, text

from blindstore import provision
from blindstore.catalog.migrate import alembic_config
from blindstore.catalog.sql import SqlCatalog
from blindstore.devtools.openbao import OpenBaoServer, free_port
from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.keys.transit import TransitKeyWrapper
from tests.contract.postgres import fresh_database
from tests.gwserver import RunningGateway
from tests.integration.test_serve import BLINDSTORE, _config, _wait_for_port

LEGACY_AKID = "AKLEGACYCLEARSECRET1"
CREDS_KEY = "hgw-creds"
LEGACY_SECRET = "legacy+clear/secret" + secrets.token_hex(10)


def _catalog_bytes(path: Path) -> bytes:
    """The catalog file and whatever journal files lie next to it, after a checkpoint."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return b"".join(
        candidate.read_bytes()
        for candidate in (
            path,
            path.with_name(path.name + "-wal"),
            path.with_name(path.name + "-shm"),
        )
        if candidate.exists()
    )


def test_no_s3_secret_is_in_the_sqlite_catalog_files(gw: RunningGateway) -> None:
    # Used once, so that the credential path ran (and cached what it unsealed).
    gw.client("demo").list_buckets()
    stored = _catalog_bytes(gw.data_dir / "catalog.db")

    assert gw.tenants["demo"].access_key.encode() in stored  # the right file was read
    for creds in gw.tenants.values():
        assert creds.secret_key.encode() not in stored


def test_no_s3_secret_is_in_postgres_rows() -> None:
    async def main(url: str) -> list[str]:
        catalog = SqlCatalog(url)
        keys = InMemoryKeyWrapper()
        try:
            first = await provision.create_tenant(catalog, keys, "clinique")
            second = await provision.create_tenant(catalog, keys, "laboratoire")
            return [first.secret_key, second.secret_key]
        finally:
            await catalog.close()

    with fresh_database() as url:
        made = anyio.run(main, url)
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                rows = [tuple(row) for row in conn.execute(text("SELECT * FROM access_keys"))]
        finally:
            engine.dispose()
    assert len(rows) == 2
    dumped = repr(rows)
    for secret in made:
        assert secret not in dumped


def _legacy_catalog(path: Path, openbao: OpenBaoServer) -> None:
    """A catalog as the gateway left it before sealed secrets (revision 0005): one tenant, one
    access key with its secret in clear; the tenant and credentials keys exist in OpenBao."""
    tenant_id = secrets.token_bytes(16)
    key_name = provision.tenant_key_name("hgw-", tenant_id)

    async def create_keys() -> None:
        admin = TransitKeyWrapper(url=openbao.addr, token=openbao.token)
        try:
            await admin.create_key(key_name)
            await admin.create_key(CREDS_KEY)
        finally:
            await admin.close()

    anyio.run(create_keys)
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0005")
            conn.execute(
                text(
                    "INSERT INTO tenants (tenant_id, name, key_name, container, created) "
                    "VALUES (:id, 'legacy', :key, :container, 1.0)"
                ),
                {"id": tenant_id, "key": key_name, "container": "c" + secrets.token_hex(8)},
            )
            conn.execute(
                text(
                    "INSERT INTO access_keys (access_key_id, secret_key, tenant_id, created) "
                    "VALUES (:akid, :secret, :id, 1.0)"
                ),
                {"akid": LEGACY_AKID, "secret": LEGACY_SECRET, "id": tenant_id},
            )
    finally:
        engine.dispose()
    assert LEGACY_SECRET.encode() in _catalog_bytes(path)


def _sealed_row(path: Path) -> tuple[str | None, str | None]:
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT secret_key, sealed_secret FROM access_keys WHERE access_key_id = ?",
            (LEGACY_AKID,),
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}


def test_a_catalog_from_before_sealing_is_sealed_at_start_and_keeps_working(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    _legacy_catalog(tmp_path / "catalog.db", openbao)
    port = free_port()
    config = _config(tmp_path, openbao, port, token_line=f"token: '{openbao.token}'")
    server = subprocess.Popen(
        [BLINDSTORE, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    try:
        _wait_for_port(port, server)
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id=LEGACY_AKID,
            aws_secret_access_key=LEGACY_SECRET,
            config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
        )
        s3.create_bucket(Bucket="upgraded")
        s3.put_object(Bucket="upgraded", Key="k", Body=b"after the upgrade")
        assert s3.get_object(Bucket="upgraded", Key="k")["Body"].read() == b"after the upgrade"
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert b"Traceback" not in stderr
    assert LEGACY_SECRET.encode() not in stderr
    clear, sealed = _sealed_row(tmp_path / "catalog.db")
    assert clear is None
    assert sealed is not None
    assert sealed.startswith("cs1:")
    assert LEGACY_SECRET.encode() not in _catalog_bytes(tmp_path / "catalog.db")


def test_access_keys_seal_seals_the_clear_secrets_once(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    _legacy_catalog(tmp_path / "catalog.db", openbao)
    config = _config(tmp_path, openbao, free_port(), token_line=f"token: '{openbao.token}'")

    def seal() -> dict[str, object]:
        done = subprocess.run(
            [BLINDSTORE, "access-keys", "seal", "--config", str(config)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, object] = json.loads(done.stdout)
        return result

    assert seal() == {"sealed": 1, "credentials_key": "hgw-creds"}
    assert seal() == {"sealed": 0, "credentials_key": "hgw-creds"}
    assert _sealed_row(tmp_path / "catalog.db")[0] is None
    assert LEGACY_SECRET.encode() not in _catalog_bytes(tmp_path / "catalog.db")


def test_serve_refuses_to_start_when_clear_secrets_cannot_be_sealed(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    _legacy_catalog(tmp_path / "catalog.db", openbao)
    # An identity without encrypt on the credentials key (a gateway policy not yet updated).
    token = _limited_token(
        openbao,
        'path "auth/token/lookup-self" { capabilities = ["read"] }\n'
        'path "auth/token/renew-self" { capabilities = ["update"] }\n',
    )
    config = _config(tmp_path, openbao, free_port(), token_line=f"token: '{token}'")
    done = subprocess.run(
        [BLINDSTORE, "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "could not be sealed" in done.stderr
    assert "Traceback" not in done.stderr
    assert LEGACY_SECRET not in done.stderr
    assert _sealed_row(tmp_path / "catalog.db")[0] == LEGACY_SECRET


def _limited_token(openbao: OpenBaoServer, policy: str) -> str:
    import urllib.request

    def call(method: str, path: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            f"{openbao.addr}/v1/{path}",
            method=method,
            data=json.dumps(body).encode(),
            headers={"X-Vault-Token": openbao.token},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else {}

    name = f"no-creds-{secrets.token_hex(4)}"
    call("PUT", f"sys/policies/acl/{name}", {"policy": policy})
    created = call("POST", "auth/token/create", {"policies": [name], "ttl": "10m"})
    auth = created["auth"]
    assert isinstance(auth, dict)
    return str(auth["client_token"])
