"""The gateway's Vault identity against a real OpenBao: AppRole (plain and response-wrapped
secret id), Kubernetes (with a stand-in TokenReview API), token renewal and re-login, TLS.

Each test enables its auth method on a mount of its own on the session server, with a policy that
may create tenant keys and wrap/unwrap (the least-privilege policies live in deploy/openbao).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from blindstore import runtime
from blindstore.config import Settings
from blindstore.devtools.openbao import OpenBaoServer, free_port, start_openbao
from blindstore.errors import ConfigError, KeyServiceError
from tests.gwserver import RunningGateway, start_gateway

pytestmark = pytest.mark.integration

#: What the gateway's test identity may do: create tenant keys (provisioning), wrap, unwrap.
TEST_POLICY = """
path "transit/keys/*" { capabilities = ["create", "update", "read"] }
path "transit/encrypt/*" { capabilities = ["update"] }
path "transit/decrypt/*" { capabilities = ["update"] }
"""


@pytest.fixture(scope="module")
def policy(openbao: OpenBaoServer) -> str:
    name = f"bs-auth-test-{secrets.token_hex(4)}"
    openbao.request("PUT", f"sys/policies/acl/{name}", {"policy": TEST_POLICY})
    return name


def _enable(openbao: OpenBaoServer, kind: str) -> str:
    """Enable the ``kind`` auth method on a mount of this test's own."""
    mount = f"{kind}-{secrets.token_hex(4)}"
    openbao.request("POST", f"sys/auth/{mount}", {"type": kind})
    return mount


def _approle(openbao: OpenBaoServer, policy: str, **role: object) -> tuple[str, str, str]:
    """A fresh AppRole mount and role: (mount, role name, role id)."""
    mount = _enable(openbao, "approle")
    openbao.request(
        "POST", f"auth/{mount}/role/gw", {"token_policies": ["default", policy], **role}
    )
    role_id = openbao.request("GET", f"auth/{mount}/role/gw/role-id")["data"]
    assert isinstance(role_id, dict)
    return mount, "gw", str(role_id["role_id"])


def _secret_id(openbao: OpenBaoServer, mount: str, role: str) -> str:
    data = openbao.request("POST", f"auth/{mount}/role/{role}/secret-id", {})["data"]
    assert isinstance(data, dict)
    return str(data["secret_id"])


def _write(path: Path, text: str) -> Path:
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _settings(data_dir: Path, vault: dict[str, Any]) -> Settings:
    return Settings.model_validate(
        {
            "vault": vault,
            "storage": {"backend": "local", "path": str(data_dir / "blobs")},
            "catalog": {"url": f"sqlite:///{data_dir / 'catalog.db'}"},
        }
    )


def _open_gateway(settings: Settings) -> None:
    """Open (log in) and close a gateway; startup errors propagate."""

    async def main() -> None:
        async with runtime.open_gateway(settings):
            pass

    anyio.run(main)


def _roundtrip(running: Any, tenant: str = "demo") -> None:
    """A PUT and a GET through the gateway: one wrap and one unwrap at Transit at least."""
    s3 = running.client(tenant)
    bucket = f"auth-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    body = secrets.token_bytes(1000)
    s3.put_object(Bucket=bucket, Key="scan.dcm", Body=body)
    assert s3.get_object(Bucket=bucket, Key="scan.dcm")["Body"].read() == body


def _audit_requests(openbao: OpenBaoServer, path: str) -> int:
    assert openbao.audit_log_path is not None
    return sum(
        1
        for entry in map(json.loads, openbao.audit_log_path.read_text().splitlines())
        if entry["type"] == "request" and entry["request"].get("path") == path
    )


# ---------------------------------------------------------------------------------------------
# AppRole


def _approle_gateway(
    openbao: OpenBaoServer,
    tmp_path: Path,
    mount: str,
    role_id: str,
    secret_file: Path,
    *,
    keys: dict[str, object] | None = None,
) -> RunningGateway:
    """A gateway logging in with AppRole (``secret_file`` holds the secret id)."""
    auth = {
        "method": "approle",
        "mount": mount,
        "role_id": role_id,
        "secret_id_file": str(secret_file),
    }
    overrides: dict[str, dict[str, object]] = {"vault": {"auth": auth}}
    if keys is not None:
        overrides["keys"] = keys
    return start_gateway(
        tmp_path / "gw",
        vault_addr=openbao.addr,
        vault_token="unused",
        tenants=("demo",),
        overrides=overrides,
    )


def test_gateway_logs_in_with_approle_and_wraps_and_unwraps(
    openbao: OpenBaoServer, policy: str, tmp_path: Path
) -> None:
    mount, role, role_id = _approle(openbao, policy)
    secret_file = _write(tmp_path / "secret-id", _secret_id(openbao, mount, role))
    running = _approle_gateway(openbao, tmp_path, mount, role_id, secret_file)
    try:
        _roundtrip(running)
    finally:
        running.stop()
    assert _audit_requests(openbao, f"auth/{mount}/login") == 1


def test_refused_approle_login_fails_startup_with_method_and_mount(
    openbao: OpenBaoServer, policy: str, tmp_path: Path
) -> None:
    mount, _, role_id = _approle(openbao, policy)
    settings = _settings(
        tmp_path,
        {
            "addr": openbao.addr,
            "auth": {"method": "approle", "mount": mount, "role_id": role_id, "secret_id": "no"},
        },
    )
    with pytest.raises(KeyServiceError, match=rf"method approle, mount {mount}\): refused") as err:
        _open_gateway(settings)
    assert "invalid role or secret ID" in str(err.value)


def test_response_wrapped_secret_id_is_unwrapped_once(
    openbao: OpenBaoServer, policy: str, tmp_path: Path
) -> None:
    mount, role, role_id = _approle(openbao, policy)
    wrapped = openbao.request(
        "POST", f"auth/{mount}/role/{role}/secret-id", {}, headers={"X-Vault-Wrap-TTL": "60s"}
    )["wrap_info"]
    assert isinstance(wrapped, dict)
    wrapping_file = _write(tmp_path / "wrapped-secret-id", str(wrapped["token"]))
    vault = {
        "auth": {
            "method": "approle",
            "mount": mount,
            "role_id": role_id,
            "wrapped_secret_id_file": str(wrapping_file),
        }
    }
    running = start_gateway(
        tmp_path / "gw",
        vault_addr=openbao.addr,
        vault_token="unused",
        tenants=("demo",),
        overrides={"vault": vault},
    )
    try:
        _roundtrip(running)
    finally:
        running.stop()
    # A restart (or an intruder) presenting the same wrapping token is refused, clearly.
    settings = _settings(tmp_path / "again", {"addr": openbao.addr, **vault})
    with pytest.raises(KeyServiceError, match="already used, has expired") as err:
        _open_gateway(settings)
    assert "wrapping token is not valid or does not exist" in str(err.value)
    assert str(wrapped["token"]) not in str(err.value)


def test_gateway_renews_its_token_and_logs_in_again_after_max_ttl(
    openbao: OpenBaoServer, policy: str, tmp_path: Path
) -> None:
    """ttl 3 s, max 6 s: renewed at ~2 s and ~4 s (capped), a new login at ~5.3 s; requests
    keep succeeding for 9 s, well past the first token's end."""
    mount, role, role_id = _approle(openbao, policy, token_ttl="3s", token_max_ttl="6s")
    secret_file = _write(tmp_path / "secret-id", _secret_id(openbao, mount, role))
    # Every GET unwraps at Transit and every PUT refills the pool: each one needs a
    # live token.
    running = _approle_gateway(
        openbao,
        tmp_path,
        mount,
        role_id,
        secret_file,
        keys={"pool_size": 1, "cache_ttl_seconds": 0},
    )
    try:
        deadline = time.monotonic() + 9.0
        while time.monotonic() < deadline:
            _roundtrip(running)
            time.sleep(0.3)
    finally:
        running.stop()
    assert _audit_requests(openbao, "auth/token/renew-self") >= 2
    assert _audit_requests(openbao, f"auth/{mount}/login") >= 2


def test_transit_call_with_a_revoked_token_logs_in_again_and_succeeds(
    openbao: OpenBaoServer, policy: str, tmp_path: Path
) -> None:
    mount, role, role_id = _approle(openbao, policy)
    secret_file = _write(tmp_path / "secret-id", _secret_id(openbao, mount, role))
    running = _approle_gateway(
        openbao,
        tmp_path,
        mount,
        role_id,
        secret_file,
        keys={"pool_size": 1, "cache_ttl_seconds": 0},
    )
    try:
        _roundtrip(running)
        # Revoke every token this mount issued: the gateway's, mid-lease.
        openbao.request("PUT", f"sys/leases/revoke-prefix/auth/{mount}/login")
        time.sleep(1.1)  # past the re-login rate limit
        _roundtrip(running)
    finally:
        running.stop()
    assert _audit_requests(openbao, f"auth/{mount}/login") == 2


# ---------------------------------------------------------------------------------------------
# Kubernetes


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _service_account_jwt(namespace: str, name: str, signature: bytes) -> str:
    """A JWT shaped like a Kubernetes service-account token. OpenBao reads its claims without
    verifying them (no pem_keys) and asks the TokenReview API whether it is genuine."""
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {
        "iss": "kubernetes/serviceaccount",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": "c0ffee00-0000-4000-8000-000000000001",
    }
    return ".".join(
        [
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(claims).encode()),
            _b64url(signature),
        ]
    )


class TokenReviewStandIn:
    """``POST /apis/authentication.k8s.io/v1/tokenreviews`` on loopback: authenticates exactly
    one JWT, as ``system:serviceaccount:<namespace>:<name>``; counts the reviews."""

    def __init__(self, genuine_jwt: str, namespace: str, name: str) -> None:
        stand_in = self
        self.reviews = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                review = json.loads(self.rfile.read(length))
                stand_in.reviews += 1
                status: dict[str, Any] = {"authenticated": False, "error": "invalid token"}
                if (
                    self.path == "/apis/authentication.k8s.io/v1/tokenreviews"
                    and review.get("spec", {}).get("token") == genuine_jwt
                ):
                    status = {
                        "authenticated": True,
                        "user": {
                            "username": f"system:serviceaccount:{namespace}:{name}",
                            "uid": "c0ffee00-0000-4000-8000-000000000001",
                            "groups": ["system:serviceaccounts"],
                        },
                    }
                body = json.dumps(
                    {
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenReview",
                        "status": status,
                    }
                ).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class ThrowawayCA:
    """A throwaway certificate authority issuing server and client certificates (PEM)."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            self._builder(self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def issue(self, directory: Path, name: str, *, server: bool) -> tuple[Path, Path]:
        """A certificate for ``name`` (server: for 127.0.0.1) and its key, as two files."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = self._builder(subject, key.public_key()).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_file = directory / f"{name}.pem"
        key_file = directory / f"{name}-key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_file, key_file

    def _builder(self, subject: x509.Name, public_key: Any) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )


def _some_ca_pem() -> str:
    """A CA certificate. OpenBao wants ``kubernetes_ca_cert`` whenever the local service-account
    files are disabled, even for an http:// API server (which ignores it)."""
    return ThrowawayCA("stand-in kubernetes CA").pem


@pytest.fixture
def kubernetes(
    openbao: OpenBaoServer, policy: str
) -> Iterator[tuple[str, str, TokenReviewStandIn]]:
    """A Kubernetes auth mount trusting a stand-in TokenReview API, with role ``gw`` bound to
    service account ns-blindstore/gateway: (mount, genuine JWT, stand-in)."""
    genuine = _service_account_jwt("ns-blindstore", "gateway", secrets.token_bytes(64))
    stand_in = TokenReviewStandIn(genuine, "ns-blindstore", "gateway")
    mount = _enable(openbao, "kubernetes")
    openbao.request(
        "POST",
        f"auth/{mount}/config",
        {
            "kubernetes_host": stand_in.url,
            "kubernetes_ca_cert": _some_ca_pem(),
            "disable_local_ca_jwt": True,
            "token_reviewer_jwt": "stand-in-reviewer",
        },
    )
    openbao.request(
        "POST",
        f"auth/{mount}/role/gw",
        {
            "bound_service_account_names": ["gateway"],
            "bound_service_account_namespaces": ["ns-blindstore"],
            "token_policies": ["default", policy],
            "token_ttl": "60s",
        },
    )
    try:
        yield mount, genuine, stand_in
    finally:
        stand_in.stop()


def test_gateway_logs_in_with_kubernetes_and_wraps_and_unwraps(
    openbao: OpenBaoServer, kubernetes: tuple[str, str, TokenReviewStandIn], tmp_path: Path
) -> None:
    mount, genuine, stand_in = kubernetes
    jwt_file = _write(tmp_path / "token", genuine)
    running = start_gateway(
        tmp_path / "gw",
        vault_addr=openbao.addr,
        vault_token="unused",
        tenants=("demo",),
        overrides={
            "vault": {
                "auth": {
                    "method": "kubernetes",
                    "mount": mount,
                    "role": "gw",
                    "jwt_file": str(jwt_file),
                }
            }
        },
    )
    try:
        _roundtrip(running)
    finally:
        running.stop()
    assert stand_in.reviews == 1
    assert _audit_requests(openbao, f"auth/{mount}/login") == 1


def test_kubernetes_login_with_a_wrong_jwt_is_refused_clearly(
    openbao: OpenBaoServer, kubernetes: tuple[str, str, TokenReviewStandIn], tmp_path: Path
) -> None:
    mount, _, stand_in = kubernetes
    forged = _service_account_jwt("ns-blindstore", "gateway", b"forged signature")
    jwt_file = _write(tmp_path / "token", forged)
    settings = _settings(
        tmp_path,
        {
            "addr": openbao.addr,
            "auth": {
                "method": "kubernetes",
                "mount": mount,
                "role": "gw",
                "jwt_file": str(jwt_file),
            },
        },
    )
    with pytest.raises(
        KeyServiceError, match=rf"method kubernetes, mount {mount}\): refused: permission denied"
    ) as err:
        _open_gateway(settings)
    assert forged not in str(err.value)
    assert stand_in.reviews == 1  # OpenBao asked the TokenReview API, which said no


# ---------------------------------------------------------------------------------------------
# TLS


@pytest.fixture
def tls_openbao(tmp_path: Path) -> Iterator[OpenBaoServer]:
    with start_openbao(workdir=tmp_path / "openbao-tls", tls=True) as server:
        yield server


def test_gateway_trusts_an_openbao_signed_by_the_configured_ca(
    tls_openbao: OpenBaoServer, tmp_path: Path
) -> None:
    assert tls_openbao.addr.startswith("https://")
    assert tls_openbao.ca_cert is not None
    running = start_gateway(
        tmp_path / "gw",
        vault_addr=tls_openbao.addr,
        vault_token=tls_openbao.token,
        tenants=("demo",),
        overrides={"vault": {"ca_cert": str(tls_openbao.ca_cert)}},
    )
    try:
        _roundtrip(running)
    finally:
        running.stop()


def test_untrusted_openbao_certificate_fails_startup_naming_ca_cert(
    tls_openbao: OpenBaoServer, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, {"addr": tls_openbao.addr, "token": tls_openbao.token})
    with pytest.raises(ConfigError, match=r"not trusted \(set vault\.ca_cert"):
        _open_gateway(settings)


def test_gateway_presents_its_client_certificate_to_a_mutual_tls_listener(
    tmp_path: Path,
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = ThrowawayCA("test OpenBao CA")
    ca_file = certs / "ca.pem"
    ca_file.write_text(ca.pem, encoding="utf-8")
    server_cert, server_key = ca.issue(certs, "openbao", server=True)
    client_cert, client_key = ca.issue(certs, "gateway", server=False)
    port = free_port()
    listener = f"""
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{port + 1}"
  tls_cert_file = {json.dumps(str(server_cert))}
  tls_key_file = {json.dumps(str(server_key))}
  tls_client_ca_file = {json.dumps(str(ca_file))}
  tls_require_and_verify_client_cert = true
}}
"""
    with start_openbao(workdir=tmp_path / "openbao-mtls", extra_config=listener) as server:
        addr = f"https://127.0.0.1:{port}"
        vault = {"addr": addr, "token": server.token, "ca_cert": str(ca_file)}
        # Without the client certificate the listener ends the handshake.
        with pytest.raises(ConfigError, match="TLS handshake failed"):
            _open_gateway(_settings(tmp_path / "no-client-cert", vault))
        running = start_gateway(
            tmp_path / "gw",
            vault_addr=addr,
            vault_token=server.token,
            tenants=("demo",),
            overrides={
                "vault": {
                    "ca_cert": str(ca_file),
                    "client_cert": str(client_cert),
                    "client_key": str(client_key),
                }
            },
        )
        try:
            _roundtrip(running)
        finally:
            running.stop()


def test_transit_wrapper_without_an_entered_session_logs_in_at_first_call(
    openbao: OpenBaoServer, policy: str, tmp_path: Path, transit_key_name: str
) -> None:
    """Tools that build ``runtime.transit_wrapper(settings)`` alone keep working."""
    mount, role, role_id = _approle(openbao, policy)
    settings = _settings(
        tmp_path,
        {
            "addr": openbao.addr,
            "auth": {
                "method": "approle",
                "mount": mount,
                "role_id": role_id,
                "secret_id": _secret_id(openbao, mount, role),
            },
        },
    )

    async def main() -> None:
        wrapper = runtime.transit_wrapper(settings)
        try:
            await wrapper.create_key(transit_key_name)
            key = await wrapper.new_data_key(transit_key_name, bytes(16))
            dek = await wrapper.unwrap(transit_key_name, bytes(16), key.object_id, key.wrapped)
            assert dek == key.dek
        finally:
            await wrapper.close()

    anyio.run(main)
    assert _audit_requests(openbao, f"auth/{mount}/login") == 1
