"""What every ``blindstore`` command shares: the settings of the instance it acts on, and one way
to run a job and report its failure.

Subcommand modules import from here, not from ``cli/main.py`` (which imports them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import typer
from rich.console import Console
from rich.text import Text

from blindstore import config as config_module
from blindstore.config import Settings, VaultSettings
from blindstore.errors import BlindstoreError, ConfigError
from blindstore.keys.justification import job, justified

if TYPE_CHECKING:
    from blindstore.keys.admin import TransitAdmin

T = TypeVar("T")

err_console = Console(stderr=True)

DEFAULT_DATA_DIR = Path(".blindstore")


def dev_settings(
    data_dir: Path,
    *,
    vault_addr: str,
    vault_token: str,
    host: str = "127.0.0.1",
    port: int = 9000,
    admin_token: str | None = None,
    policy: Path | None = None,
) -> Settings:
    """The settings `blindstore dev` runs with: everything under ``data_dir``."""
    data_dir = data_dir.absolute()
    return Settings.model_validate(
        {
            "listen": {"host": host, "port": port},
            "vault": {"addr": vault_addr, "token": vault_token},
            "storage": {"backend": "local", "path": str(data_dir / "blobs")},
            "catalog": {"url": f"sqlite:///{data_dir / 'catalog.db'}"},
            "admin": {"token": admin_token},
            "placement": {"policy": str(policy) if policy else None},
        }
    )


def _read_dev_json(data_dir: Path) -> dict[str, Any]:
    """The facts a `blindstore dev` (dev.json) or `blindstore demo` (demo.json) instance wrote."""
    path = data_dir / "dev.json"
    if not path.exists() and (data_dir / "demo.json").exists():
        path = data_dir / "demo.json"
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path} not found or unreadable: is `blindstore dev --data-dir {data_dir}` running?"
        ) from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return loaded


def resolve_settings(data_dir: Path | None, config_path: Path | None) -> Settings:
    """Settings of the instance a command acts on."""
    if config_path is not None and data_dir is not None:
        raise ConfigError("give --data-dir or --config, not both")
    if config_path is not None:
        return config_module.load(config_path)
    data_dir = data_dir or DEFAULT_DATA_DIR
    info = _read_dev_json(data_dir)
    # A demo directory routes by the policy `blindstore demo` wrote next to its demo.json.
    policy = data_dir / "policy.yaml"
    return dev_settings(
        data_dir,
        vault_addr=info["vault_addr"],
        vault_token=info["vault_token"],
        policy=policy if (data_dir / "demo.json").exists() and policy.exists() else None,
    )


def transit_admin(vault: VaultSettings, token: str) -> TransitAdmin:
    """A ``TransitAdmin`` on the instance's OpenBao (address, TLS, mount) with ``token``: key
    administration is done with an administrative identity, not the gateway's."""
    from blindstore.keys.admin import TransitAdmin
    from blindstore.keys.transit import make_client

    client = make_client(
        vault.addr,
        token,
        read_timeout=vault.timeout_seconds,
        verify=str(vault.ca_cert) if vault.ca_cert else True,
        cert=(str(vault.client_cert), str(vault.client_key))
        if vault.client_cert is not None and vault.client_key is not None
        else None,
    )
    return TransitAdmin(client, mount=vault.mount)


def _fail(exc: BlindstoreError) -> typer.Exit:
    """Say ``error: <message>`` on stderr and exit 2. The message is printed as is (no markup,
    no wrapping): it may hold brackets, and scripts grep it."""
    err_console.print(
        Text.assemble(("error:", "red"), " ", exc.message), highlight=False, soft_wrap=True
    )
    return typer.Exit(code=2)


def _fail_group(group: BaseExceptionGroup[BaseException]) -> typer.Exit:
    """`_fail` for a BlindstoreError that task groups wrapped in ExceptionGroups; else re-raise."""
    lone: BaseException = group
    while isinstance(lone, BaseExceptionGroup) and len(lone.exceptions) == 1:
        lone = lone.exceptions[0]
    if not isinstance(lone, BlindstoreError):
        raise group
    return _fail(lone)


@contextmanager
def reported_failures() -> Iterator[None]:
    """A BlindstoreError raised in the block (alone, or alone in exception groups) ends the
    command with ``error: <message>`` and exit status 2; anything else propagates."""
    try:
        yield
    except BlindstoreError as exc:
        raise _fail(exc) from exc
    except BaseExceptionGroup as group:
        raise _fail_group(group) from group


def run_job(work: Callable[[], Awaitable[T]], *, op: str | None = None) -> T:
    """Run ``work`` in an event loop, failures reported as ``reported_failures`` says. With
    ``op``, its Transit calls carry the justification ``job(op)`` (OpenBao's audit log)."""

    async def main() -> T:
        if op is None:
            return await work()
        with justified(job(op)):
            return await work()

    with reported_failures():
        return anyio.run(main)
    raise AssertionError("unreachable: reported_failures re-raises")  # pragma: no cover


# ------------------------------------------------------------- administrative identity

TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--vault-token-file",
        help="File holding the administrative Vault token (default: BLINDSTORE_ADMIN_VAULT_TOKEN,"
        " else the instance's token).",
    ),
]


PublicKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="Verify offline with this PEM public key (from `keys signing-key`) instead of "
        "asking OpenBao for the signing key's public keys.",
    ),
]


def admin_transit(settings: Settings, token_file: Path | None) -> Any:
    """A ``TransitAdmin`` with the administrative token."""
    from blindstore.keys.transit import resolve_token

    vault = settings.vault
    token = os.environ.get("BLINDSTORE_ADMIN_VAULT_TOKEN")
    if token_file is not None:
        token = resolve_token(None, token_file)
    if not token:
        try:
            token = resolve_token(
                vault.token.get_secret_value() if vault.token else None, vault.token_file
            )
        except ConfigError as exc:
            raise ConfigError(
                "no administrative Vault token: give --vault-token-file or "
                "BLINDSTORE_ADMIN_VAULT_TOKEN (the key administrator's, not the gateway's)"
            ) from exc
    return transit_admin(vault, token)


def signing_key_name(settings: Settings) -> str:
    """The Transit ed25519 key that signs certificates (shredding, export)."""
    return f"{settings.vault.key_prefix}sign"


async def tenant_named(catalog: Any, name: str) -> Any:
    tenant = await catalog.get_tenant_by_name(name)
    if tenant is None:
        raise ConfigError(f"no tenant named {name!r}")
    return tenant


async def certificate_signer(settings: Settings, admin: Any) -> Any:
    from blindstore.lifecycle.shred import Signer

    name = signing_key_name(settings)
    await admin.ensure_signing_key(name)
    return Signer(
        admin=admin, key_name=name, vault_addr=settings.vault.addr, mount=settings.vault.mount
    )


async def signing_public_keys(settings: Settings, token_file: Path | None) -> dict[int, bytes]:
    """The configured signing key's public keys by version, from OpenBao. The key is the one
    configured, never a name read from the document being verified (pinned, as for audit
    checkpoints)."""
    info = await admin_transit(settings, token_file).key_info(signing_key_name(settings))
    if info is None:
        raise ConfigError("the signing key does not exist in OpenBao")
    return dict(info.public_keys)
