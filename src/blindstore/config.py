"""Settings: loaded once at the edge (CLI), validated, frozen, passed explicitly.

A production config is a YAML file (see ``deploy/blindstore.example.yaml``); ``blindstore dev``
builds the same tree in code. Secrets (the Vault token) are referenced by value, file or the
``VAULT_TOKEN`` environment variable, and never appear in a ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from blindstore.catalog.base import DELETE_DELAY_SECONDS
from blindstore.errors import ConfigError

MiB = 1024 * 1024


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ListenSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(9000, ge=0, le=65535)


_MOUNT_PATH = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$"
#: Where the kubelet mounts a pod's service-account token.
KUBERNETES_JWT_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def _one_of(model: BaseModel, what: str, *names: str, required: bool = True) -> None:
    """Refuse ``model`` unless exactly one (or, if not ``required``, at most one) of ``names``
    is set; the message names the settings as written in YAML."""
    given = [name for name in names if getattr(model, name) is not None]
    if len(given) > 1:
        raise ValueError(f"{what}: give only one of {', '.join(given)}")
    if required and not given:
        raise ValueError(f"{what}: one of {', '.join(names)} is required")


class TokenAuthSettings(_Frozen):
    """A static token: ``vault.token``, ``vault.token_file`` or ``VAULT_TOKEN``. Renewed while
    renewable; it cannot log in again, so a token past its max TTL needs a restart."""

    method: Literal["token"] = "token"


class AppRoleAuthSettings(_Frozen):
    """AppRole: a role id and a secret id, each by value or file. ``wrapped_secret_id`` is a
    response-wrapping token holding the secret id, unwrapped once at startup (single use: a
    second unwrap fails, which also reveals an interception)."""

    method: Literal["approle"]
    mount: str = Field("approle", pattern=_MOUNT_PATH)
    role_id: SecretStr | None = None
    role_id_file: Path | None = None
    secret_id: SecretStr | None = None
    secret_id_file: Path | None = None
    wrapped_secret_id: SecretStr | None = None
    wrapped_secret_id_file: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> AppRoleAuthSettings:
        _one_of(self, "vault.auth (approle)", "role_id", "role_id_file")
        _one_of(
            self,
            "vault.auth (approle)",
            "secret_id",
            "secret_id_file",
            "wrapped_secret_id",
            "wrapped_secret_id_file",
        )
        return self


class KubernetesAuthSettings(_Frozen):
    """Kubernetes: the pod's service-account JWT (re-read at every login: projected tokens
    rotate) exchanged for a token of ``role``."""

    method: Literal["kubernetes"]
    mount: str = Field("kubernetes", pattern=_MOUNT_PATH)
    role: str = Field(min_length=1)
    jwt_file: Path = KUBERNETES_JWT_FILE


VaultAuthSettings = Annotated[
    TokenAuthSettings | AppRoleAuthSettings | KubernetesAuthSettings,
    Field(discriminator="method"),
]


class VaultSettings(_Frozen):
    addr: str = "http://127.0.0.1:8200"
    #: How the gateway obtains its token (docs/operations.md, "Vault authentication").
    auth: VaultAuthSettings = TokenAuthSettings()
    #: The static token of ``auth.method: token`` (or ``VAULT_TOKEN``).
    token: SecretStr | None = None
    token_file: Path | None = None
    mount: str = "transit"
    #: Tenant keys are named ``<key_prefix>t-<tenant id hex>``; the gateway's Vault policy is
    #: scoped to this prefix.
    key_prefix: str = "hgw-"
    #: CA bundle that signed the server's certificate (``https`` addr); default: certifi's.
    ca_cert: Path | None = None
    #: Client certificate and key (PEM) for mutual TLS, both or neither.
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout_seconds: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> VaultSettings:
        if self.auth.method != "token":
            given = [n for n in ("token", "token_file") if getattr(self, n) is not None]
            if given:
                raise ValueError(
                    f"vault.{' and vault.'.join(given)} cannot be combined with "
                    f"vault.auth.method {self.auth.method}: the token comes from the login"
                )
        else:
            _one_of(self, "vault", "token", "token_file", required=False)
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("vault.client_cert and vault.client_key go together (mutual TLS)")
        return self


class BucketKeySettings(_Frozen):
    """Opt-in bucket-key mode, a WEAKER model (docs/operations.md "Bucket-key mode").

    DEKs of new objects are wrapped locally under a bucket key that Transit wraps once; that key
    stays in gateway RAM until one of its bounds is reached. The defaults are the caps of
    SECURITY-NOTES §2.5-5. ``buckets`` empty: every bucket (when enabled).
    """

    enabled: bool = False
    buckets: tuple[str, ...] = ()
    lifetime_seconds: float = Field(300.0, gt=0, le=3600)
    max_uses: int = Field(10_000, ge=1, le=100_000)
    max_bytes: int = Field(1024 * MiB, ge=1, le=16 * 1024 * MiB)


class KeySettings(_Frozen):
    #: Pre-wrapped DEKs kept per tenant key; one Transit batch call refills it. 0: no pool,
    #: every PUT wraps its own DEK in one Transit call.
    pool_size: int = Field(128, ge=0, le=1024)
    pool_ttl_seconds: float = Field(300.0, gt=0, le=300)
    #: Unwrapped DEKs are cached per object for ranged-read bursts; memory ≤ entries × ~200 B.
    cache_ttl_seconds: float = Field(60.0, ge=0, le=60)
    cache_entries: int = Field(10_000, ge=0)
    #: How often each gateway re-reads which keys were crypto-shredded (reads stop within it).
    revocation_refresh_seconds: float = Field(2.0, gt=0, le=60)
    bucket_keys: BucketKeySettings = BucketKeySettings()


class StorageSettings(_Frozen):
    """Where ciphertext goes, until placement policies route objects (issue 3).

    ``backend``: ``local`` (``path``) or ``s3``/``azure``/``gcs`` (``settings``, the backend's own
    settings model: see docs/operations.md), named ``name`` in the catalog.
    """

    backend: Literal["local", "s3", "azure", "gcs"] = "local"
    name: str = Field("local", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    path: Path = Path(".blindstore/blobs")
    settings: dict[str, Any] = Field(default_factory=dict)
    #: Seconds the blobs of an overwritten or deleted object are kept before deletion, so that
    #: reads already streaming them (through any gateway sharing the catalog) finish whole.
    delete_delay_seconds: float = Field(DELETE_DELAY_SECONDS, ge=0, le=7 * 86400)


class PlacementSettings(_Frozen):
    """Route objects by a placement policy (docs/policy.md).

    ``policy``: the policy file. Unset: every object goes to ``storage`` alone. Set: every
    backend the policy declares is built from its ``kind`` and ``settings``, objects go where
    its rules say, and ``storage`` stays readable (for objects written before) unless the policy
    declares a backend of the same name. ``blindstore serve`` reloads the file on SIGHUP.
    """

    policy: Path | None = None


class AdminSettings(_Frozen):
    """The admin plane (``/-/`` on the gateway's port): its bearer token, never a tenant's key.

    Without a token only ``/-/health`` and ``/-/ready`` answer.
    """

    token: SecretStr | None = None
    token_file: Path | None = None

    def resolve_token(self) -> str | None:
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            try:
                return self.token_file.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise ConfigError(f"cannot read the admin token file {self.token_file}") from exc
        return None


class AuditSettings(_Frozen):
    """The audit trail (docs/audit.md): every S3 and admin request, hash-chained in the catalog.

    A signed checkpoint pins the chain every ``checkpoint_every`` records or
    ``checkpoint_seconds`` seconds, whichever comes first (and at shutdown): records after the
    last checkpoint can be cut off or rewritten undetectably by someone who can write the
    catalog, so keep these small. ``signing_key`` is the Transit ed25519 key (default
    ``<vault.key_prefix>audit``); the gateway's Vault policy may sign with it and nothing else.
    """

    #: Off only to measure its cost: requests are then not recorded at all.
    enabled: bool = True
    checkpoint_every: int = Field(1000, ge=1)
    checkpoint_seconds: float = Field(300.0, gt=0)
    signing_key: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,128}$")
    #: PEM public keys of the signing key, in version order (``blindstore audit signing-key``),
    #: so that ``POST /-/audit/verify`` can check checkpoints: the gateway's own Vault identity
    #: may sign with the key but not read it.
    public_keys: tuple[Path, ...] = ()

    def key_name(self, vault: VaultSettings) -> str:
        return self.signing_key or f"{vault.key_prefix}audit"


class CatalogSettings(_Frozen):
    url: str = "sqlite:///.blindstore/catalog.db"


class S3Settings(_Frozen):
    region: str = "us-east-1"
    #: Host names under which virtual-hosted-style requests arrive (``bucket.<domain>``).
    virtual_host_domains: tuple[str, ...] = ("localhost",)


class LimitSettings(_Frozen):
    #: Objects up to this size are verified whole before the status line is sent; larger ones
    #: stream and abort the connection at the first bad chunk.
    verify_whole_below: int = Field(4 * MiB, ge=0)
    #: A client that sends nothing for this long during an upload gets RequestTimeout.
    body_idle_timeout_seconds: float = Field(30.0, gt=0)
    #: A client must send its request line and headers within this (slowloris guard).
    header_timeout_seconds: float = Field(20.0, gt=0)
    #: Header section (names, values, separators), counted while reading.
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    #: Request target (path and query); presigned URLs with a session token fit in 16 KiB.
    max_url_bytes: int = Field(16 * 1024, ge=1024)
    #: Open connections per process; the next one gets 503 SlowDown and is closed.
    max_connections: int = Field(1000, ge=1)
    #: Requests being handled per process; the next one gets 503 SlowDown (and its connection
    #: is closed).
    max_concurrent_requests: int = Field(256, ge=1)
    #: A client that reads nothing of a response for this long (the write buffer stays full)
    #: is disconnected.
    send_timeout_seconds: float = Field(60.0, gt=0)
    #: An idle keep-alive connection is closed after this.
    keep_alive_timeout_seconds: int = Field(30, ge=1)
    #: Memory per in-flight request is bounded by about twice this.
    io_buffer_bytes: int = Field(512 * 1024, ge=16 * 1024)


class Settings(_Frozen):
    listen: ListenSettings = ListenSettings()
    vault: VaultSettings = VaultSettings()
    keys: KeySettings = KeySettings()
    storage: StorageSettings = StorageSettings()
    placement: PlacementSettings = PlacementSettings()
    admin: AdminSettings = AdminSettings()
    audit: AuditSettings = AuditSettings()
    catalog: CatalogSettings = CatalogSettings()
    s3: S3Settings = S3Settings()
    limits: LimitSettings = LimitSettings()
    log_level: str = "info"


def load(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read a YAML settings file (if given), then apply ``BLINDSTORE_*``/``VAULT_*`` overrides."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    vault = dict(data.get("vault") or {})
    if "VAULT_ADDR" in environ and "addr" not in vault:
        vault["addr"] = environ["VAULT_ADDR"]
    auth = vault.get("auth")
    method = auth.get("method", "token") if isinstance(auth, dict) else "token"
    if (
        "VAULT_TOKEN" in environ
        and method == "token"
        and "token" not in vault
        and "token_file" not in vault
    ):
        vault["token"] = environ["VAULT_TOKEN"]
    if vault:
        data["vault"] = vault
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}invalid settings:\n{describe_errors(exc)}") from exc


def describe_errors(exc: ValidationError) -> str:
    """One line per problem, without the offending input: it may be a secret (a token, a
    secret id) and this message goes to the terminal and the logs."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = ".".join(str(part) for part in error["loc"])
        lines.append(f"  {location or '(top level)'}: {error['msg']}")
    return "\n".join(lines)
