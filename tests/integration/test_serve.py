"""`blindstore serve --config FILE`: the production entry point, against an existing OpenBao."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config

from blindstore.devtools.openbao import OpenBaoServer, free_port

BLINDSTORE = str(Path(sys.executable).parent / "blindstore")


def _config(tmp_path: Path, openbao: OpenBaoServer, port: int, *, token_line: str) -> Path:
    path = tmp_path / "blindstore.yaml"
    path.write_text(
        f"listen: {{host: 127.0.0.1, port: {port}}}\n"
        f"vault: {{addr: '{openbao.addr}', {token_line}}}\n"
        f"storage: {{path: '{tmp_path / 'blobs'}'}}\n"
        f"catalog: {{url: 'sqlite:///{tmp_path / 'catalog.db'}'}}\n",
        encoding="utf-8",
    )
    return path


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gateway exited during startup"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the gateway did not start listening")


def test_serve_runs_the_gateway_from_a_settings_file_with_a_token_file(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    token_file = tmp_path / "vault-token"
    token_file.write_text(openbao.token + "\n", encoding="utf-8")
    port = free_port()
    config = _config(tmp_path, openbao, port, token_line=f"token_file: '{token_file}'")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    created = subprocess.run(
        [BLINDSTORE, "tenants", "create", "Clinique Sud", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    creds = json.loads(created.stdout)
    server = subprocess.Popen(
        [BLINDSTORE, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        _wait_for_port(port, server)
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id=creds["access_key"],
            aws_secret_access_key=creds["secret_key"],
            config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
        )
        s3.create_bucket(Bucket="records")
        s3.put_object(Bucket="records", Key="a/b.txt", Body=b"production")
        assert s3.get_object(Bucket="records", Key="a/b.txt")["Body"].read() == b"production"
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert b"Traceback" not in stderr
    assert b"a/b.txt" not in stderr, "object names must never be logged"


def test_serve_takes_the_vault_token_from_the_environment(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    port = free_port()
    config = _config(tmp_path, openbao, port, token_line="mount: transit")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["VAULT_TOKEN"] = openbao.token
    created = subprocess.run(
        [BLINDSTORE, "tenants", "create", "env-tenant", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    without = {k: v for k, v in env.items() if k != "VAULT_TOKEN"}
    refused = subprocess.run(
        [BLINDSTORE, "tenants", "create", "no-token", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        env=without,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "Vault token" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_sighup_reloads_the_placement_policy(openbao: OpenBaoServer, tmp_path: Path) -> None:
    """`blindstore serve` re-reads its policy on SIGHUP; requests after it use the new rules."""
    import urllib.request

    policy = tmp_path / "policy.yaml"
    template = (
        "version: 1\nbackends:\n"
        "  disk-a: {{kind: local, provider: Op, jurisdiction: EEA,\n"
        "           settings: {{path: '{root}/a'}}}}\n"
        "  disk-b: {{kind: local, provider: Op, jurisdiction: EEA,\n"
        "           settings: {{path: '{root}/b'}}}}\n"
        "rules:\n  - {{name: {rule}, targets: [{target}]}}\n"
    )
    policy.write_text(template.format(root=tmp_path, rule="to-a", target="disk-a"), "utf-8")
    port = free_port()
    config = _config(tmp_path, openbao, port, token_line=f"token: '{openbao.token}'")
    with config.open("a", encoding="utf-8") as extra:
        extra.write(f"placement: {{policy: '{policy}'}}\nadmin: {{token: admin-secret}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    server = subprocess.Popen(
        [BLINDSTORE, "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )

    def rule_in_force() -> str:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/-/policy/explain",
            data=json.dumps({"tenant": "t", "bucket": "b", "key": "k"}).encode(),
            headers={"Authorization": "Bearer admin-secret", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            name: str = json.loads(response.read())["rule"]["name"]
            return name

    try:
        _wait_for_port(port, server)
        assert rule_in_force() == "to-a"
        policy.write_text(template.format(root=tmp_path, rule="to-b", target="disk-b"), "utf-8")
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while rule_in_force() != "to-b":
            assert time.monotonic() < deadline, "SIGHUP did not reload the policy"
            time.sleep(0.1)
        # An invalid policy on the next SIGHUP is refused: the running one stays.
        policy.write_text("version: 1\nrules: [", "utf-8")
        server.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert server.poll() is None
        assert rule_in_force() == "to-b"
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert b"policy_reload_refused" in stderr
