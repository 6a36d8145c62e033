"""Settings: loaded once at the edge (CLI), validated, frozen, passed explicitly.

A production config is a YAML file (see ``deploy/blindstore.example.yaml``); ``blindstore dev``
builds the same tree in code. Secrets (the Vault token) are referenced by value, file or the
``VAULT_TOKEN`` environment variable, and never appear in a ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from blindstore.errors import ConfigError

MiB = 1024 * 1024


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ListenSettings(_Frozen):
    host: str = "127.0.0.1"
    port: int = Field(9000, ge=0, le=65535)


class VaultSettings(_Frozen):
    addr: str = "http://127.0.0.1:8200"
    token: SecretStr | None = None
    token_file: Path | None = None
    mount: str = "transit"
    #: Tenant keys are named ``<key_prefix>t-<tenant id hex>``; the gateway's Vault policy is
    #: scoped to this prefix.
    key_prefix: str = "hgw-"
    ca_cert: Path | None = None
    timeout_seconds: float = Field(10.0, gt=0)


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
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    #: Memory per in-flight request is bounded by about twice this.
    io_buffer_bytes: int = Field(512 * 1024, ge=16 * 1024)


class Settings(_Frozen):
    listen: ListenSettings = ListenSettings()
    vault: VaultSettings = VaultSettings()
    keys: KeySettings = KeySettings()
    storage: StorageSettings = StorageSettings()
    placement: PlacementSettings = PlacementSettings()
    admin: AdminSettings = AdminSettings()
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
    if "VAULT_TOKEN" in environ and "token" not in vault and "token_file" not in vault:
        vault["token"] = environ["VAULT_TOKEN"]
    if vault:
        data["vault"] = vault
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}invalid settings:\n{exc}") from exc
