"""The key lifecycle under least privilege: each ``blindstore keys`` step with the identity
``deploy/openbao/provision.sh`` made for it, against a real provisioned OpenBao."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from blindstore.devtools.openbao import OpenBaoServer, start_openbao
from tests.gwserver import RunningGateway, start_gateway
from tests.integration.keycli import keys_cli, record
from tests.integration.provisioned import ROLES, login, run_provision
from tests.integration.test_shredding import _put_with_subject


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with start_openbao(workdir=tmp_path_factory.mktemp("ids-openbao"), audit=True) as server:
        yield server


@pytest.fixture(scope="module")
def token_files(bao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each role's token, in a file (``--vault-token-file``)."""
    out = tmp_path_factory.mktemp("ids")
    run_provision(bao, "--out", str(out / "credentials"))
    files = {}
    for role in ROLES:
        path = out / f"{role}.token"
        path.write_text(login(bao, out / "credentials", role), encoding="utf-8")
        files[role.removeprefix("blindstore-")] = str(path)
    return files


@pytest.fixture(scope="module")
def gw(
    bao: OpenBaoServer, token_files: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """A gateway on its own AppRole identity; tenant keys made by the key administrator."""
    gateway_token = Path(token_files["gateway"]).read_text()
    data_dir = tmp_path_factory.mktemp("ids-gateway")
    (data_dir / "dev.json").write_text(
        json.dumps({"vault_addr": bao.addr, "vault_token": gateway_token}), encoding="utf-8"
    )
    running = start_gateway(
        data_dir,
        vault_addr=bao.addr,
        vault_token=gateway_token,
        admin_token=Path(token_files["kms-admin"]).read_text(),
        tenants=("clinic", "leaving"),
        overrides={"keys": {"pool_size": 1, "revocation_refresh_seconds": 0.2}},
    )
    yield running
    running.stop()


def test_rotation_rewrap_and_shredding_each_run_with_their_own_identity(
    gw: RunningGateway, token_files: dict[str, str], tmp_path: Path
) -> None:
    s3 = gw.client("clinic")
    s3.create_bucket(Bucket="records")
    for i in range(3):
        s3.put_object(Bucket="records", Key=f"r{i}", Body=b"record")
    _put_with_subject(s3, "records", "patient", b"one patient's scan", "PATIENT-42")
    assert record(gw, "records", "patient").key_name.startswith("hgw-p-")

    def as_role(role: str, *args: str, expect: int = 0) -> object:
        return keys_cli(gw, *args, "--vault-token-file", token_files[role], expect=expect)

    # Neither the gateway nor the rewrap job may rotate; the key administrator may.
    for role in ("gateway", "rewrap"):
        refused = as_role(role, "rotate", "--tenant", "clinic", expect=2)
        assert "permission denied" in refused.output  # type: ignore[attr-defined]
    as_role("kms-admin", "rotate", "--tenant", "clinic")

    # The rewrap job rewraps but may not raise the floor; the administrator then raises it.
    rewrapped = as_role("rewrap", "rewrap", "--tenant", "clinic", "--settle", "0")
    assert isinstance(rewrapped, dict)
    assert rewrapped["rewrapped"] >= 3
    assert rewrapped["remaining"] == 0
    tenant_detail = rewrapped["details"][0]
    assert "may not raise" in tenant_detail["not_raised"]
    raised = as_role("kms-admin", "rewrap", "--tenant", "clinic", "--settle", "0")
    assert isinstance(raised, dict)
    assert raised["rewrapped"] == 0
    assert raised["details"][0]["min_decryption_version"] == 2
    for i in range(3):
        assert s3.get_object(Bucket="records", Key=f"r{i}")["Body"].read() == b"record"

    # Shredding is the administrator's; the certificate verifies with the auditor's identity.
    as_role("gateway", "shred", "--tenant", "clinic", "--subject", "PATIENT-42", "--grace", "0",
            "--yes", expect=2)  # fmt: skip
    certificate_file = tmp_path / "certificate.json"
    certificate = as_role(
        "kms-admin", "shred", "--tenant", "clinic", "--subject", "PATIENT-42", "--grace", "0",
        "--yes", "--certificate-out", str(certificate_file),
    )  # fmt: skip
    assert isinstance(certificate, dict)
    assert certificate["destroyed"]["objects"] == 1
    assert "blindstore-kms-admin" in certificate["operator"]
    verified = as_role("auditor", "verify-certificate", str(certificate_file))
    assert isinstance(verified, dict)
    assert verified["valid"] is True
    assert s3.get_object(Bucket="records", Key="r0")["Body"].read() == b"record"


def test_export_reads_with_the_gateway_identity_and_signs_with_the_key_administrators(
    gw: RunningGateway, token_files: dict[str, str], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from blindstore.cli.main import app

    # A tenant of its own: "clinic"'s floor was raised above the version its pooled DEKs were
    # wrapped under (rewrap --settle 0 above), which only a cached DEK still reads.
    s3 = gw.client("leaving")
    s3.create_bucket(Bucket="exit")
    s3.put_object(Bucket="exit", Key="leaving.dcm", Body=b"the customer's data")

    def export(role: str, dest: Path) -> object:
        return CliRunner().invoke(
            app,
            ["export", "--tenant", "leaving", "--bucket", "exit", "--to", str(dest),
             "--data-dir", str(gw.data_dir), "--vault-token-file", token_files[role]],
        )  # fmt: skip

    # The instance's own identity (the gateway's, in dev.json) may not sign the header...
    refused = export("gateway", tmp_path / "refused")
    assert refused.exit_code == 2, refused.output  # type: ignore[attr-defined]
    assert "permission denied" in refused.output  # type: ignore[attr-defined]
    assert not (tmp_path / "refused" / "export.json").exists()
    # ...the key administrator signs, and the auditor verifies.
    done = export("kms-admin", tmp_path / "exit")
    assert done.exit_code == 0, done.output  # type: ignore[attr-defined]
    verified = CliRunner().invoke(
        app,
        ["export", "verify", str(tmp_path / "exit"), "--data-dir", str(gw.data_dir),
         "--vault-token-file", token_files["auditor"]],
    )  # fmt: skip
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["objects"] == 1
