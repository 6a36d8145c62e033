"""The admin plane under /-/: health, and the placement policy (validate, explain, reload)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blindstore.devtools.openbao import OpenBaoServer
from tests.gwserver import RunningGateway, start_admin_gateway
from tests.integration import rawhttp

TOKEN = "admin-token-for-tests"

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
  spare-disk:
    kind: local
    provider: Hôpital Nord
    jurisdiction: EEA
    settings: {{path: "{root}/spare-disk"}}
rules:
  - name: {rule}
    targets: [{target}]
"""


def _write(path: Path, rule: str, target: str) -> None:
    path.write_text(POLICY.format(root=path.parent, rule=rule, target=target), encoding="utf-8")


@pytest.fixture
def admin_gw(openbao: OpenBaoServer, tmp_path: Path) -> Iterator[tuple[RunningGateway, Path]]:
    gw = start_admin_gateway(
        tmp_path,
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        admin_token=TOKEN,
        policy=POLICY.format(root=tmp_path, rule="everything-on-vault", target="vault-disk"),
    )
    yield gw, tmp_path / "policy.yaml"
    gw.stop()


def _call(
    gw: RunningGateway,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = TOKEN,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    request = urllib.request.Request(
        gw.endpoint + path, data=data, method=method, headers={"Content-Type": content_type}
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


FACTS = {"tenant": "demo", "bucket": "scans", "key": "DUPONT/IRM.dcm"}


def test_health_and_readiness_need_no_token(admin_gw: tuple[RunningGateway, Path]) -> None:
    gw, _ = admin_gw
    assert _call(gw, "GET", "/-/health", token=None) == (200, {"status": "ok"})
    assert _call(gw, "GET", "/-/ready", token=None) == (200, {"status": "ready"})


def test_explain_says_which_rule_places_an_object(admin_gw: tuple[RunningGateway, Path]) -> None:
    gw, _ = admin_gw
    status, body = _call(gw, "POST", "/-/policy/explain", FACTS)
    assert status == 200
    assert body["rule"]["name"] == "everything-on-vault"
    assert [t["backend"] if "backend" in t else t["name"] for t in body["targets"]] == [
        "vault-disk"
    ]


def test_admin_calls_refuse_a_missing_wrong_or_tenant_credential(
    admin_gw: tuple[RunningGateway, Path],
) -> None:
    gw, _ = admin_gw
    assert _call(gw, "POST", "/-/policy/explain", FACTS, token=None)[0] == 401
    assert _call(gw, "POST", "/-/policy/explain", FACTS, token="nope")[0] == 401
    # A tenant's S3 signature opens nothing on the admin plane.
    signed = rawhttp.signed(gw, "POST", "/-/policy/explain", body=json.dumps(FACTS).encode())
    assert signed.status == 401


def test_validate_reports_every_problem_with_its_line(
    admin_gw: tuple[RunningGateway, Path],
) -> None:
    gw, _ = admin_gw
    bad = "version: 1\nbackends: {}\nrules:\n  - name: r\n    targets: [nowhere]\n"
    status, body = _call(gw, "POST", "/-/policy/validate", bad, content_type="application/yaml")
    assert status == 200
    assert body["valid"] is False
    assert any(p["line"] == 5 and "nowhere" in p["reason"] for p in body["problems"])


def test_reload_applies_a_new_policy_and_keeps_the_old_one_if_invalid(
    admin_gw: tuple[RunningGateway, Path],
) -> None:
    gw, policy = admin_gw
    _write(policy, "everything-on-spare", "spare-disk")
    assert _call(gw, "POST", "/-/policy/reload") == (200, {"reloaded": True})
    assert _call(gw, "POST", "/-/policy/explain", FACTS)[1]["rule"]["name"] == (
        "everything-on-spare"
    )
    s3 = gw.client("demo")
    s3.create_bucket(Bucket="scans")
    s3.put_object(Bucket="scans", Key="k", Body=b"after reload")
    record = gw.run(gw.gateway.catalog.get_object("scans", "k"))
    assert record is not None
    assert record.backends == ("spare-disk",)

    policy.write_text("version: 1\nrules: [", encoding="utf-8")
    assert _call(gw, "POST", "/-/policy/reload") == (200, {"reloaded": False})
    assert _call(gw, "POST", "/-/policy/explain", FACTS)[1]["rule"]["name"] == (
        "everything-on-spare"
    )


def test_the_openapi_schema_lists_the_admin_operations(
    admin_gw: tuple[RunningGateway, Path],
) -> None:
    gw, _ = admin_gw
    status, schema = _call(gw, "GET", "/-/openapi.json", token=None)
    assert status == 200
    assert {"/-/health", "/-/policy/explain", "/-/policy/reload", "/-/policy/validate"} <= set(
        schema["paths"]
    )
