"""The admin API's tenants and access keys, its credential checks and its error body."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from blindstore.devtools.openbao import OpenBaoServer
from tests.gwserver import RunningGateway, start_gateway
from tests.integration import rawhttp
from tests.integration.adminhttp import AdminResponse, call

TOKEN = "admin-token-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def gw(
    openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    running = start_gateway(
        tmp_path_factory.mktemp("admin-tenants"),
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        tenants=("demo",),
        overrides={"admin": {"token": TOKEN}},
    )
    yield running
    running.stop()


def admin(gw: RunningGateway, method: str, path: str, body: Any = None, **kw: Any) -> AdminResponse:
    kw.setdefault("token", TOKEN)
    return call(gw.endpoint, method, path, body, **kw)


def unique(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}"


def s3_client(gw: RunningGateway, access_key: str, secret_key: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=gw.endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


# -- tenants ---------------------------------------------------------------------------------


def test_a_created_tenant_has_its_transit_key_and_working_credentials_shown_once(
    gw: RunningGateway, openbao: OpenBaoServer
) -> None:
    name = unique("hopital")
    created = admin(gw, "POST", "/-/tenants", {"name": name})

    assert created.status == 201
    tenant, key = created.body["tenant"], created.body["access_key"]
    assert tenant["name"] == name
    assert key["tenant"] == name
    assert len(key["secret_key"]) == 40
    # The Transit key exists in OpenBao, named by the random tenant id, never by the name.
    assert tenant["transit_key"] == f"hgw-t-{tenant['tenant_id']}"
    assert name not in tenant["transit_key"]
    openbao.request("GET", f"transit/keys/{tenant['transit_key']}")
    # The credentials work on the S3 plane.
    s3 = s3_client(gw, key["access_key_id"], key["secret_key"])
    s3.create_bucket(Bucket=unique("fresh"))
    # The secret is never shown again.
    shown = admin(gw, "GET", f"/-/tenants/{name}")
    assert shown.status == 200
    assert shown.body == tenant
    listed = admin(gw, "GET", f"/-/tenants/{name}/access-keys")
    assert listed.body["access_keys"] == [
        {"access_key_id": key["access_key_id"], "created": listed.body["access_keys"][0]["created"]}
    ]
    assert key["secret_key"] not in repr(listed.body) + repr(shown.body)


def test_creating_a_tenant_twice_is_a_conflict(gw: RunningGateway) -> None:
    name = unique("twice")
    assert admin(gw, "POST", "/-/tenants", {"name": name}).status == 201

    again = admin(gw, "POST", "/-/tenants", {"name": name})

    assert again.status == 409
    assert again.code == "TenantAlreadyExists"


@pytest.mark.parametrize("name", ["a/b", "   ", "tab\there", "-leading", "x" * 65])
def test_a_tenant_name_outside_the_documented_pattern_is_refused(
    gw: RunningGateway, name: str
) -> None:
    refused = admin(gw, "POST", "/-/tenants", {"name": name})

    assert (refused.status, refused.code) == (422, "ValidationFailed")
    assert refused.body["details"][0]["location"] == "body.name"


def test_a_tenant_name_may_be_written_in_any_script(gw: RunningGateway) -> None:
    name = f"Hôpital Nord {secrets.token_hex(2)} l'Étoile"

    created = admin(gw, "POST", "/-/tenants", {"name": name})

    assert created.status == 201
    assert admin(gw, "GET", f"/-/tenants/{quote(name)}").body["name"] == name


def test_unknown_fields_in_a_body_are_refused(gw: RunningGateway) -> None:
    refused = admin(gw, "POST", "/-/tenants", {"name": unique("typo"), "nmae": "x"})

    assert (refused.status, refused.code) == (422, "ValidationFailed")
    assert refused.body["details"][0]["location"] == "body.nmae"


def test_tenants_are_listed_page_by_page(gw: RunningGateway) -> None:
    prefix = unique("page")
    for n in range(3):
        assert admin(gw, "POST", "/-/tenants", {"name": f"{prefix}-{n}"}).status == 201

    seen: list[str] = []
    after = ""
    pages = 0
    while True:
        page = admin(gw, "GET", f"/-/tenants?limit=2&after={after}")
        assert page.status == 200
        assert len(page.body["tenants"]) <= 2
        seen += [t["name"] for t in page.body["tenants"]]
        pages += 1
        if page.body["next"] is None:
            break
        after = page.body["next"]

    assert seen == sorted(seen)
    assert {f"{prefix}-{n}" for n in range(3)} | {"demo"} <= set(seen)
    assert pages >= 2


def test_an_unknown_tenant_is_not_found(gw: RunningGateway) -> None:
    for method, path in [
        ("GET", "/-/tenants/nobody-here"),
        ("GET", "/-/tenants/nobody-here/access-keys"),
        ("POST", "/-/tenants/nobody-here/access-keys"),
        ("DELETE", "/-/tenants/nobody-here/access-keys/BSXXXXXXXXXXXXXXXXXX"),
    ]:
        missing = admin(gw, method, path)
        assert (missing.status, missing.code) == (404, "NoSuchTenant"), (method, path)


# -- access keys -----------------------------------------------------------------------------


def test_a_revoked_access_key_is_refused_at_once_and_the_others_still_work(
    gw: RunningGateway,
) -> None:
    name = unique("rotate")
    first = admin(gw, "POST", "/-/tenants", {"name": name}).body["access_key"]
    second = admin(gw, "POST", f"/-/tenants/{name}/access-keys")
    assert second.status == 201
    old = s3_client(gw, first["access_key_id"], first["secret_key"])
    new = s3_client(gw, second.body["access_key_id"], second.body["secret_key"])
    old.list_buckets()  # cached by the S3 plane's credential cache

    revoked = admin(gw, "DELETE", f"/-/tenants/{name}/access-keys/{first['access_key_id']}")

    assert revoked.status == 204
    with pytest.raises(ClientError) as refused:
        old.list_buckets()
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    new.list_buckets()
    listed = admin(gw, "GET", f"/-/tenants/{name}/access-keys").body["access_keys"]
    assert [k["access_key_id"] for k in listed] == [second.body["access_key_id"]]
    again = admin(gw, "DELETE", f"/-/tenants/{name}/access-keys/{first['access_key_id']}")
    assert (again.status, again.code) == (404, "NoSuchAccessKey")


def test_keys_made_through_the_admin_api_are_stored_sealed(gw: RunningGateway) -> None:
    name = unique("sealed")
    first = admin(gw, "POST", "/-/tenants", {"name": name}).body["access_key"]
    second = admin(gw, "POST", f"/-/tenants/{name}/access-keys").body
    for made in (first, second):
        stored = gw.run(gw.gateway.catalog.get_access_key(made["access_key_id"]))
        assert stored is not None
        assert made["secret_key"] not in repr(dataclasses.astuple(stored))
        s3_client(gw, made["access_key_id"], made["secret_key"]).list_buckets()


def test_a_key_of_another_tenant_cannot_be_revoked_through_this_one(gw: RunningGateway) -> None:
    mine = unique("mine")
    admin(gw, "POST", "/-/tenants", {"name": mine})
    demo_key = gw.tenants["demo"].access_key

    refused = admin(gw, "DELETE", f"/-/tenants/{mine}/access-keys/{demo_key}")

    assert (refused.status, refused.code) == (404, "NoSuchAccessKey")
    gw.client("demo").list_buckets()


def test_access_keys_are_listed_page_by_page(gw: RunningGateway) -> None:
    name = unique("many")
    ids = [admin(gw, "POST", "/-/tenants", {"name": name}).body["access_key"]["access_key_id"]]
    ids += [
        admin(gw, "POST", f"/-/tenants/{name}/access-keys").body["access_key_id"] for _ in range(2)
    ]

    first = admin(gw, "GET", f"/-/tenants/{name}/access-keys?limit=2").body
    rest = admin(gw, "GET", f"/-/tenants/{name}/access-keys?limit=2&after={first['next']}").body

    assert [k["access_key_id"] for k in first["access_keys"] + rest["access_keys"]] == sorted(ids)
    assert rest["next"] is None


# -- credentials -----------------------------------------------------------------------------


def test_tenant_s3_credentials_open_nothing_on_the_admin_plane(gw: RunningGateway) -> None:
    creds = gw.tenants["demo"]
    signed = rawhttp.signed(gw, "GET", "/-/tenants")
    assert signed.status == 401
    assert b"S3 credentials are not admin credentials" in signed.body
    for bearer in (creds.secret_key, creds.access_key, f"{creds.access_key}:{creds.secret_key}"):
        refused = admin(gw, "GET", "/-/tenants", token=bearer)
        assert (refused.status, refused.code) == (401, "AdminTokenRequired")
    missing = admin(gw, "POST", "/-/tenants", {"name": unique("sneaky")}, token=None)
    assert (missing.status, missing.code) == (401, "AdminTokenRequired")
    assert missing.headers["www-authenticate"] == "Bearer"
    basic = admin(gw, "GET", "/-/tenants", token=None, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status == 401


def test_without_an_admin_token_only_health_and_readiness_answer(
    openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    running = start_gateway(
        tmp_path_factory.mktemp("no-admin"),
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        tenants=(),
    )
    try:
        assert call(running.endpoint, "GET", "/-/health", token=None).status == 200
        assert call(running.endpoint, "GET", "/-/ready", token=None).status == 200
        for token in (None, "", "anything"):
            refused = call(running.endpoint, "GET", "/-/tenants", token=token)
            assert (refused.status, refused.code) == (403, "AdminPlaneDisabled")
    finally:
        running.stop()


# -- errors and schema -----------------------------------------------------------------------


def test_a_body_that_does_not_match_the_schema_names_the_faulty_field(
    gw: RunningGateway,
) -> None:
    refused = admin(gw, "POST", "/-/tenants", {"name": ""})

    assert (refused.status, refused.code) == (422, "ValidationFailed")
    assert [d["location"] for d in refused.body["details"]] == ["body.name"]
    bad_limit = admin(gw, "GET", "/-/tenants?limit=0")
    assert (bad_limit.status, bad_limit.code) == (422, "ValidationFailed")
    assert bad_limit.body["details"][0]["location"] == "query.limit"


def test_unknown_admin_paths_and_methods_answer_with_the_error_body(gw: RunningGateway) -> None:
    assert admin(gw, "GET", "/-/nothing-here").code == "NotFound"
    wrong = admin(gw, "PUT", "/-/tenants")
    assert (wrong.status, wrong.code) == (405, "MethodNotAllowed")


def test_every_admin_operation_has_a_stable_operation_id(gw: RunningGateway) -> None:
    schema = admin(gw, "GET", "/-/openapi.json", token=None).body
    ids = {
        operation["operationId"] for item in schema["paths"].values() for operation in item.values()
    }

    assert {
        "Health",
        "Ready",
        "ValidatePolicy",
        "ExplainPlacement",
        "ReloadPolicy",
        "ListTenants",
        "CreateTenant",
        "GetTenant",
        "ListAccessKeys",
        "CreateAccessKey",
        "DeleteAccessKey",
    } <= ids
