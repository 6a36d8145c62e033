"""`blindstore demo` (= `make demo`): the hybrid placement for a newcomer, in one command.

Runs the real command, then reads every provider stand-in through its own SDK or directory,
using only what `demo.json` publishes, to see where each object's ciphertext physically is.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from azure.storage.blob import BlobServiceClient
from botocore.config import Config
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from blindstore.devtools.openbao import free_port

REPO = Path(__file__).parents[2]
BLINDSTORE = str(Path(sys.executable).parent / "blindstore")
DEV_FIELDS = {
    "endpoint",
    "access_key",
    "secret_key",
    "data_dir",
    "vault_addr",
    "vault_token",
    "alt_access_key",
    "alt_secret_key",
    "tenant",
    "alt_tenant",
}


def _wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "blindstore demo exited early"
        if path.exists():
            try:
                loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
                return loaded
            except ValueError:
                pass
        time.sleep(0.2)
    raise AssertionError("demo.json never appeared")


def _s3(endpoint: str, access_key: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def _held(backend: dict[str, Any], container: str) -> set[str]:
    """Blob ids a backend holds in ``container``, asked of the provider itself."""
    if backend["kind"] == "local":
        root = Path(backend["path"]) / container
        return (
            {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
            if root.is_dir()
            else set()
        )
    if backend["kind"] == "s3":
        client = _s3(backend["endpoint"], backend["access_key"], backend["secret_key"])
        names = {b["Name"] for b in client.list_buckets()["Buckets"]}
        if container not in names:
            return set()
        return {o["Key"] for o in client.list_objects_v2(Bucket=container).get("Contents", [])}
    if backend["kind"] == "azure":
        service = BlobServiceClient.from_connection_string(backend["connection_string"])
        box = service.get_container_client(container)
        return {b.name for b in box.list_blobs()} if box.exists() else set()
    client = storage.Client(
        project=backend["project"],
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": backend["endpoint"]},
    )
    bucket = client.lookup_bucket(container)
    return set() if bucket is None else {b.name for b in bucket.list_blobs()}


def _closed(url: str) -> bool:
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=0.5).close()
    except OSError:
        return True
    return False


def test_make_demo_places_each_classification_where_the_policy_says(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    process = subprocess.Popen(
        [
            BLINDSTORE,
            "demo",
            "--data-dir",
            str(data_dir),
            "--port",
            str(free_port()),
            "--policy",
            str(REPO / "deploy" / "policy.demo.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        info = _wait_for(data_dir / "demo.json", process)
        assert set(info) >= DEV_FIELDS
        backends = {b["name"]: b for b in info["backends"]}
        assert set(backends) == {"sovereign-disk", "onprem-s3", "aws", "azure", "gcs"}
        for backend in backends.values():
            assert {"name", "kind", "provider", "containers"} <= set(backend)
            assert "path" in backend or "endpoint" in backend

        s3 = _s3(info["endpoint"], info["access_key"], info["secret_key"])
        placed = {
            "patient-records": {"sovereign-disk", "onprem-s3"},
            "research-exports": {"sovereign-disk", "aws"},
            "newsletters": {"aws", "azure", "gcs"},
        }
        # The demo policy requires consent and a legal basis for identifying data.
        consent = {"x-blindstore-consent-ref": "c-1", "x-blindstore-legal-basis": "gdpr-9-2-h"}

        def sign_consent(request: Any, **_kwargs: Any) -> None:
            for name, value in consent.items():
                request.headers[name] = value

        s3.meta.events.register_first("before-sign.s3.PutObject", sign_consent)
        for bucket in placed:
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key="DUPONT_Jean.dcm", Body=f"scan in {bucket}".encode())
            body = s3.get_object(Bucket=bucket, Key="DUPONT_Jean.dcm")["Body"].read()
            assert body == f"scan in {bucket}".encode()

        container = backends["aws"]["containers"][info["tenant"]]
        held = {name: _held(b, container) for name, b in backends.items()}
        # Each object landed exactly on its policy's targets (one blob per object per target):
        # sovereign-disk 2, onprem-s3 1, aws 2, azure 1, gcs 1.
        expected = {name: sum(name in where for where in placed.values()) for name in backends}
        assert {name: len(blobs) for name, blobs in held.items()} == expected
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output.decode(errors="replace")[-2000:]
    assert b"Traceback" not in output
    assert all(_closed(b.get("endpoint", info["endpoint"])) for b in info["backends"])
    assert _closed(info["vault_addr"])
    assert _closed(info["endpoint"])
