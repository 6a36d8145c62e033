"""``/-/ready`` tells the truth: 503 while OpenBao is frozen or down, 200 once it answers again;
the reason only to the admin token; probes are not audited."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

from blindstore.devtools.openbao import OpenBaoServer
from tests.contract.postgres import SERVER_URL, fresh_database
from tests.gwserver import RunningGateway, start_gateway

TOKEN = "admin-token-for-readiness"


def _ready(gw: RunningGateway, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(gw.endpoint + "/-/ready")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _until(gw: RunningGateway, status: int, token: str | None = None) -> Any:
    """The readiness answer once it has the expected status (the result is cached ~1 s)."""
    deadline = time.monotonic() + 15
    while True:
        got, body = _ready(gw, token)
        if got == status or time.monotonic() > deadline:
            assert got == status, body
            return body
        time.sleep(0.2)


def test_readiness_follows_openbao_and_names_the_cause_only_to_the_admin(
    disposable_openbao: OpenBaoServer, tmp_path: Path
) -> None:
    gw = start_gateway(
        tmp_path / "gateway",
        vault_addr=disposable_openbao.addr,
        vault_token=disposable_openbao.token,
        tenants=("demo",),
        overrides={"admin": {"token": TOKEN}},
    )
    pid = disposable_openbao.process.pid
    try:
        assert _until(gw, 200) == {"status": "ready"}
        audit_head = gw.run(gw.gateway.catalog.audit_head())

        # Frozen: connections are accepted and never answered.
        os.kill(pid, signal.SIGSTOP)
        try:
            anonymous = _until(gw, 503)
            assert anonymous["code"] == "NotReady"
            assert anonymous["details"] == []
            admin = _until(gw, 503, TOKEN)
            assert [d["location"] for d in admin["details"]] == ["vault"]
        finally:
            os.kill(pid, signal.SIGCONT)
        assert _until(gw, 200) == {"status": "ready"}

        # Probes act on nothing: they leave no audit record (and cost no catalog write).
        assert gw.run(gw.gateway.catalog.audit_head()) == audit_head

        disposable_openbao.stop()
        admin = _until(gw, 503, TOKEN)
        assert [d["location"] for d in admin["details"]] == ["vault"]
        assert "KeyServiceUnavailable" in admin["details"][0]["reason"]
    finally:
        gw.stop()


def test_readiness_follows_the_catalog_database(openbao: OpenBaoServer, tmp_path: Path) -> None:
    with fresh_database() as url:
        name = make_url(url).database
        gw = start_gateway(
            tmp_path / "gateway",
            vault_addr=openbao.addr,
            vault_token=openbao.token,
            tenants=("demo",),
            overrides={"admin": {"token": TOKEN}, "catalog": {"url": url}},
        )
        admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
        try:
            assert _until(gw, 200) == {"status": "ready"}
            with admin.connect() as conn:
                # The database refuses connections, and the gateway's are cut.
                conn.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name"
                    ),
                    {"name": name},
                )
            down = _until(gw, 503, TOKEN)
            assert [d["location"] for d in down["details"]] == ["catalog"]
            with admin.connect() as conn:
                conn.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            assert _until(gw, 200) == {"status": "ready"}
        finally:
            gw.stop()
            admin.dispose()
