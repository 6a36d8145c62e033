"""``blindstore keys``: rotation and rewrap, crypto-shredding, certificates.

These commands act on OpenBao with an administrative identity, never the gateway's (whose policy
refuses them): ``--vault-token-file`` or ``BLINDSTORE_ADMIN_VAULT_TOKEN`` give its token, else the
instance's own token is used (right for `blindstore dev`, whose token is OpenBao's root token).
"""

from __future__ import annotations

import getpass
import json
import re
import socket
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from blindstore.catalog.base import Catalog
from blindstore.cli.audit import record_job
from blindstore.cli.common import (
    PublicKeyOption,
    TokenFileOption,
    admin_transit,
    certificate_signer,
    resolve_settings,
    run_job,
    signing_key_name,
    signing_public_keys,
    tenant_named,
)
from blindstore.cli.options import ConfigOption, DataDirOption
from blindstore.errors import BlindstoreError, ConfigError

keys_app = typer.Typer(
    help="Key lifecycle: rotate and rewrap, crypto-shred, verify certificates.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant name.")]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``0``, ``90``, ``30s``, ``15m``, ``24h`` or ``7d``."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 0, 30s, 15m, 24h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


async def _unrevoked_subject_keys(catalog: Catalog, tenant_id: bytes) -> list[str]:
    """A tenant's subject keys that no shredding request covers: the live ones, and retired ones
    whose shredding was restored after the subject got a new key (their data is readable)."""
    revoked = await catalog.revoked_key_names()
    return [
        key.key_name
        for key in await catalog.list_subject_keys(tenant_id)
        if key.key_name not in revoked
    ]


# ---------------------------------------------------------------------------- rotation


@keys_app.command()
def rotate(
    tenant: TenantOption,
    include_subjects: Annotated[
        bool, typer.Option(help="Also rotate the tenant's data-subject keys.")
    ] = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    vault_token_file: TokenFileOption = None,
) -> None:
    """Rotate a tenant's Transit key: new objects use the new version, old ones stay readable."""
    from blindstore import runtime

    async def main() -> list[dict[str, Any]]:
        settings = resolve_settings(data_dir, config)
        admin = admin_transit(settings, vault_token_file)
        catalog = runtime.open_catalog(settings)
        try:
            found = await tenant_named(catalog, tenant)
            names = [found.key_name]
            if include_subjects:
                names += await _unrevoked_subject_keys(catalog, found.tenant_id)
        finally:
            await catalog.close()
        rotated = []
        for name in names:
            if await admin.key_info(name) is None:
                continue  # a subject key no object used yet
            rotated.append({"key": name, "latest_version": await admin.rotate(name)})
        return rotated

    console.print_json(data={"rotated": run_job(main, op="keys-rotate")})
    err_console.print("Run `blindstore keys rewrap` to move existing wrapped keys to it.")


@keys_app.command()
def rewrap(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant (default: all).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=240, help="Keys per Transit call.")] = 200,
    settle: Annotated[
        str,
        typer.Option(
            help="Raise min_decryption_version only when the latest version is this old "
            "(running gateways may still hold DEKs wrapped before it)."
        ),
    ] = "15m",
    raise_floor: Annotated[
        bool,
        typer.Option("--raise/--no-raise", help="Raise min_decryption_version when done."),
    ] = True,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    vault_token_file: TokenFileOption = None,
) -> None:
    """Rewrap every wrapped DEK under the latest key versions (resumable), then raise
    min_decryption_version. Data is never re-encrypted or moved."""
    from blindstore import runtime
    from blindstore.lifecycle.rewrap import pending_count, rewrap_key

    settle_seconds = parse_duration(settle)

    async def main() -> dict[str, Any]:
        settings = resolve_settings(data_dir, config)
        admin = admin_transit(settings, vault_token_file)
        catalog = runtime.open_catalog(settings)
        try:
            tenants = (
                [await tenant_named(catalog, tenant)] if tenant else await catalog.list_tenants()
            )
            names: list[str] = []
            for found in tenants:
                if found.shredded is not None:
                    continue
                names.append(found.key_name)
                names += await _unrevoked_subject_keys(catalog, found.tenant_id)
            names = [name for name in names if await admin.key_info(name) is not None]
            total = await pending_count(catalog, admin, names)
            reports = []
            with _progress() as progress:
                task = progress.add_task("rewrapping", total=total)
                for name in names:
                    report = await rewrap_key(
                        catalog,
                        admin,
                        name,
                        batch_size=batch_size,
                        settle=settle_seconds,
                        raise_floor=raise_floor,
                        progress=lambda done: progress.advance(task, done),
                    )
                    reports.append(report)
        finally:
            await catalog.close()
        return {
            "keys": len(reports),
            "rewrapped": sum(r.rewrapped for r in reports),
            "skipped_changed_meanwhile": sum(r.skipped for r in reports),
            "failed": sum(r.failed for r in reports),
            "remaining": sum(r.remaining for r in reports),
            "details": [
                {
                    "key": r.key_name,
                    "latest_version": r.latest_version,
                    "rewrapped": r.rewrapped,
                    "remaining": r.remaining,
                    "min_decryption_version": r.min_decryption_version,
                    **({"not_raised": r.not_raised_because} if r.not_raised_because else {}),
                    **({"errors": list(r.errors)} if r.errors else {}),
                }
                for r in reports
            ],
        }

    summary = run_job(main, op="keys-rewrap")
    console.print_json(data=summary)
    err_console.print(
        f"rewrapped {summary['rewrapped']} wrapped keys under {summary['keys']} Transit keys"
    )
    if summary["failed"]:
        raise typer.Exit(code=1)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


# ---------------------------------------------------------------------------- shredding


def _operator(explicit: str | None, vault_name: str | None) -> str:
    if explicit:
        return explicit
    local = f"{getpass.getuser()}@{socket.gethostname()}"
    return f"{local} (vault: {vault_name})" if vault_name else local


@keys_app.command()
def shred(
    tenant: TenantOption,
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject",
            help="Shred only this data subject's key (the id given in x-blindstore-data-subject).",
        ),
    ] = None,
    grace: Annotated[
        str,
        typer.Option(
            help="Grace period before the keys are destroyed (soft-deleted meanwhile, "
            "`blindstore keys restore` undoes); 0 destroys now."
        ),
    ] = "7d",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    operator: Annotated[
        str | None, typer.Option(help="Who orders this (default: user@host and Vault identity).")
    ] = None,
    certificate_out: Annotated[
        Path | None, typer.Option("--certificate-out", help="Write the certificate here too.")
    ] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    vault_token_file: TokenFileOption = None,
) -> None:
    """Crypto-shred a tenant (or one data subject): its data becomes unreadable for good, and a
    signed certificate records it."""
    from blindstore import runtime
    from blindstore.lifecycle import shred as shredding

    grace_seconds = parse_duration(grace)

    async def main() -> dict[str, Any]:
        settings = resolve_settings(data_dir, config)
        admin = admin_transit(settings, vault_token_file)
        async with runtime.open_gateway(settings) as gateway:
            catalog = gateway.catalog
            found = await tenant_named(catalog, tenant)
            who = _operator(operator, await admin.display_name())
            if subject is None:
                request = shredding.new_tenant_shred(
                    found,
                    await _unrevoked_subject_keys(catalog, found.tenant_id),
                    grace=grace_seconds,
                    operator=who,
                )
            else:
                request = await shredding.new_subject_shred(
                    catalog,
                    found,
                    subject,
                    grace=grace_seconds,
                    operator=who,
                    keyed=gateway.keyed_subject,
                )
            usage = await catalog.key_usage(request.key_names)
            scope = "data subject of tenant" if subject else "tenant"
            if not yes and not await anyio.to_thread.run_sync(
                lambda: typer.confirm(
                    f"Destroy the keys of {scope} {found.name!r}: {usage.objects} objects, "
                    f"{usage.bytes} bytes become unreadable"
                    + (" now" if grace_seconds == 0 else f" (after {grace})")
                    + ". Continue?"
                )
            ):
                raise typer.Abort()
            await shredding.check_permissions(admin, request, signing_key_name(settings))
            await shredding.request_shred(catalog, admin, request)
            await record_job(
                catalog,
                "keys.shred",
                tenant_id=found.tenant_id,
                detail={
                    "shred_id": request.shred_id,
                    "scope": request.scope,
                    "keys": len(request.key_names),
                    "grace_seconds": grace_seconds,
                    "operator": who,
                },
            )
            if grace_seconds > 0:
                return {
                    "shred_id": request.shred_id,
                    "status": "pending",
                    "destroy_after": shredding.iso_time(request.destroy_after),
                    "keys": list(request.key_names),
                    "note": "keys soft-deleted; reads refused. `blindstore keys purge` destroys "
                    "them after the grace period; `blindstore keys restore` undoes it until then.",
                }
            signer = await certificate_signer(settings, admin)
            try:
                certificate = await shredding.destroy(catalog, gateway.backends, request, signer)
            except BlindstoreError as exc:
                await _record_destroy(catalog, request, exc)
                exc.message += (
                    f" — shredding request {request.shred_id} is recorded (reads are refused): "
                    "run `blindstore keys purge` to finish it"
                )
                raise
            await _record_destroy(catalog, request, None)
            return certificate

    result = run_job(main, op="keys-shred")
    if certificate_out is not None and result.get("type"):
        certificate_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    console.print_json(data=result)


async def _record_destroy(
    catalog: Catalog,
    shred: Any,
    failure: BlindstoreError | None,
    *,
    operation: str = "keys.destroy",
) -> None:
    """Crypto-shredding is in the audit trail: which request, how many keys, and the outcome."""
    await record_job(
        catalog,
        operation,
        result="200" if failure is None else f"{failure.status} {failure.code}",
        tenant_id=shred.tenant_id,
        detail={"shred_id": shred.shred_id, "scope": shred.scope, "keys": len(shred.key_names)},
    )


@keys_app.command()
def restore(
    shred_id: Annotated[str, typer.Argument(help="The id `blindstore keys shred` printed.")],
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    vault_token_file: TokenFileOption = None,
) -> None:
    """Undo a crypto-shredding request during its grace period."""
    from blindstore import runtime
    from blindstore.lifecycle.shred import NothingToShred, restore_shred

    async def main() -> dict[str, Any]:
        settings = resolve_settings(data_dir, config)
        admin = admin_transit(settings, vault_token_file)
        catalog = runtime.open_catalog(settings)
        try:
            found = [s for s in await catalog.list_shreds() if s.shred_id == shred_id]
            if not found:
                raise NothingToShred(f"no shredding request {shred_id}")
            await restore_shred(catalog, admin, found[0])
            await record_job(
                catalog,
                "keys.restore",
                tenant_id=found[0].tenant_id,
                detail={"shred_id": shred_id, "keys": len(found[0].key_names)},
            )
        finally:
            await catalog.close()
        return {"shred_id": shred_id, "status": "restored", "keys": list(found[0].key_names)}

    console.print_json(data=run_job(main, op="keys-restore"))


@keys_app.command()
def purge(
    certificates_dir: Annotated[
        Path | None,
        typer.Option("--certificates-dir", help="Also write each certificate to <id>.json here."),
    ] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    vault_token_file: TokenFileOption = None,
) -> None:
    """Destroy the keys of every shredding request whose grace period is over (run it from a
    timer), delete their data and issue the certificates."""
    import time

    from blindstore import runtime
    from blindstore.lifecycle.shred import destroy

    async def main() -> list[dict[str, Any]]:
        settings = resolve_settings(data_dir, config)
        admin = admin_transit(settings, vault_token_file)
        async with runtime.open_gateway(settings) as gateway:
            now = time.time()
            due = [
                s
                for s in await gateway.catalog.list_shreds()
                if s.destroyed is None and s.destroy_after <= now
            ]
            if not due:
                return []
            signer = await certificate_signer(settings, admin)
            certificates = []
            for shred in due:
                try:
                    certificates.append(
                        await destroy(gateway.catalog, gateway.backends, shred, signer)
                    )
                except BlindstoreError as exc:
                    await _record_destroy(gateway.catalog, shred, exc, operation="keys.purge")
                    raise
                await _record_destroy(gateway.catalog, shred, None, operation="keys.purge")
            return certificates

    certificates = run_job(main, op="keys-purge")
    if certificates_dir is not None:
        certificates_dir.mkdir(parents=True, exist_ok=True)
        for certificate in certificates:
            path = certificates_dir / f"{certificate['shred_id']}.json"
            path.write_text(json.dumps(certificate, indent=2) + "\n", encoding="utf-8")
    console.print_json(data=certificates)
    err_console.print(f"{len(certificates)} shredding request(s) completed")


@keys_app.command("shreds")
def list_shreds(data_dir: DataDirOption = None, config: ConfigOption = None) -> None:
    """List crypto-shredding requests (pending and done)."""
    from blindstore import runtime
    from blindstore.lifecycle.shred import iso_time

    async def main() -> list[dict[str, Any]]:
        catalog = runtime.open_catalog(resolve_settings(data_dir, config))
        try:
            return [
                {
                    "shred_id": s.shred_id,
                    "scope": s.scope,
                    "tenant_id": s.tenant_id.hex(),
                    "keys": list(s.key_names),
                    "requested": iso_time(s.requested),
                    "destroy_after": iso_time(s.destroy_after),
                    "destroyed": iso_time(s.destroyed) if s.destroyed is not None else None,
                    "operator": s.operator,
                }
                for s in await catalog.list_shreds()
            ]
        finally:
            await catalog.close()

    console.print_json(data=run_job(main, op="keys-shreds"))


@keys_app.command()
def certificate(
    shred_id: str,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Print the signed certificate of a completed shredding request."""
    from blindstore import runtime

    async def main() -> str | None:
        catalog = runtime.open_catalog(resolve_settings(data_dir, config))
        try:
            for s in await catalog.list_shreds():
                if s.shred_id == shred_id:
                    return s.certificate
        finally:
            await catalog.close()
        raise ConfigError(f"no shredding request {shred_id}")

    text = run_job(main, op="keys-certificate")
    if text is None:
        raise typer.BadParameter("this request's keys are not destroyed yet: no certificate")
    console.print_json(text)


@keys_app.command("signing-key")
def signing_key(
    output: Annotated[Path | None, typer.Option("--output", help="Write the PEM here.")] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    vault_token_file: TokenFileOption = None,
) -> None:
    """Print the public key that verifies certificates (PEM), to publish with them."""
    from blindstore.lifecycle.certificates import public_key_pem

    async def main() -> str:
        settings = resolve_settings(data_dir, config)
        info = await admin_transit(settings, vault_token_file).ensure_signing_key(
            signing_key_name(settings)
        )
        return public_key_pem(info.public_keys[max(info.public_keys)])

    pem = run_job(main, op="keys-signing-key")
    if output is not None:
        output.write_text(pem, encoding="utf-8")
    typer.echo(pem, nl=False)


@keys_app.command("verify-certificate")
def verify_certificate(
    file: Annotated[Path, typer.Argument(help="A certificate (JSON).")],
    public_key: PublicKeyOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    vault_token_file: TokenFileOption = None,
) -> None:
    """Check a crypto-shredding certificate's signature; exit 1 if it does not verify."""
    from blindstore.lifecycle.certificates import CertificateInvalid, public_key_from_pem, verify

    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        err_console.print(f"[red]invalid:[/red] cannot read {file}: {exc}")
        raise typer.Exit(code=1) from exc

    async def public_keys() -> dict[int, bytes]:
        return await signing_public_keys(resolve_settings(data_dir, config), vault_token_file)

    try:
        if not isinstance(loaded, dict):
            raise CertificateInvalid("a certificate is a JSON object")
        if public_key is not None:
            signature = loaded.get("signature")
            version = signature.get("key_version") if isinstance(signature, dict) else None
            keys = {version: public_key_from_pem(public_key.read_bytes())}
            version = verify(loaded, {k: v for k, v in keys.items() if isinstance(k, int)})
        else:
            version = verify(loaded, run_job(public_keys, op="keys-verify-certificate"))
    except CertificateInvalid as exc:
        err_console.print(f"[red]invalid:[/red] {exc.message}")
        raise typer.Exit(code=1) from exc
    console.print_json(
        data={
            "valid": True,
            "shred_id": loaded.get("shred_id"),
            "scope": loaded.get("scope"),
            "destroyed_at": loaded.get("destroyed_at"),
            "signing_key_version": version,
        }
    )
