"""Transparency: for any object, where its bytes are, who holds its key, why it is there, who
carries each HDS activity for it, where it came from and when it was last read; and per bucket
or tenant, how many objects and bytes each backend, provider and jurisdiction holds.

The records are built from the sovereign catalog (the rows say where every replica is) and the
placement policy's declared facts (provider, region, jurisdiction, certifications, HDS
carriers). Nothing is read from Vault or a backend: the answer stays available when they are
not, and it reveals no key material and no ciphertext. Each record is a frozen pydantic model
whose JSON form (``as_json()``) is what the CLI, the admin API and the SDK show.

``TransparencySource`` is what the functions need: the ``Gateway`` satisfies it, and the CLI
builds a lighter one (catalog and policy file, no Vault session).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from blindstore.catalog.base import Catalog, ObjectRecord, ReplicaUsage, Tenant
from blindstore.config import Settings
from blindstore.errors import NoSuchBucket, NoSuchKey, NoSuchTenant
from blindstore.keys.base import BUCKET_WRAPPED_FORM
from blindstore.policy.engine import CLASSIFICATION_HEADER
from blindstore.policy.explain import explain
from blindstore.policy.model import Backend, HdsActivity, ObjectFacts, Policy
from blindstore.subjects import is_subject_key

__all__ = [
    "BackendFacts",
    "BackendUsage",
    "KeyCustodian",
    "PlacementReason",
    "Replica",
    "Summary",
    "TransparencyRecord",
    "TransparencySource",
    "Usage",
    "bucket_summary",
    "object_transparency",
    "tenant_summary",
]

#: The user-metadata name of the classification header (``x-amz-meta-classification``).
_CLASSIFICATION_META = CLASSIFICATION_HEADER.removeprefix("x-amz-meta-")


class TransparencySource(Protocol):
    """What transparency reads: the catalog and the placement policy in force (or None)."""

    @property
    def catalog(self) -> Catalog: ...

    @property
    def current_policy(self) -> Callable[[], Policy | None]: ...


@dataclass(frozen=True, slots=True)
class CatalogSource:
    """A ``TransparencySource`` without a gateway (the CLI: catalog and policy file only)."""

    catalog: Catalog
    policy: Policy | None

    @property
    def current_policy(self) -> Callable[[], Policy | None]:
        return lambda: self.policy


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Document(_Frozen):
    """A top-level JSON document: its schema id comes first, under the key ``schema``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def as_json(self) -> dict[str, object]:
        """The JSON-ready form (what the CLI prints and the admin API returns)."""
        return self.model_dump(mode="json", by_alias=True)


class BackendFacts(_Frozen):
    """A backend's auditable facts: the policy's declarations, or only its kind when the policy
    does not declare it (``declared`` False: provider and jurisdiction are then unknown)."""

    name: str
    kind: str
    declared: bool
    provider: str | None
    region: str | None
    country: str | None
    jurisdiction: str | None
    certifications: list[str]
    #: Activity id -> who carries it (None: no one is declared to); every activity is present.
    hds_activities: dict[HdsActivity, str | None]
    #: Activities no one is declared to carry, in the standard order.
    uncarried_activities: list[HdsActivity]
    description: str | None


class Replica(_Frozen):
    """One copy of the object: ``stored`` (the catalog row names it a complete replica) or
    ``pending_repair`` (a target that missed the write; ``blindstore repair`` copies it)."""

    backend: BackendFacts
    status: Literal["stored", "pending_repair"]


class KeyCustodian(_Frozen):
    """Who holds the key that wraps the object's data key.

    ``scope``: the tenant's key, a data subject's key (crypto-shreddable alone), or another
    key. ``wrapping``: ``transit`` (the DEK is wrapped by the Transit key directly) or
    ``bucket_key`` (bucket-key mode: wrapped in the gateway under a bucket key that the Transit
    key wraps; ``bucket_key_id`` names it and ``key_version`` is the bucket key's).
    """

    vault_addr: str
    transit_mount: str
    key_name: str
    key_version: int
    scope: Literal["tenant", "data_subject", "other"]
    wrapping: Literal["transit", "bucket_key"]
    bucket_key_id: str | None
    #: The key was crypto-shredded (or a shredding request for it is pending).
    shredded: bool


class PlacementReason(_Frozen):
    """The rule that places this object under the CURRENT policy, and why.

    The catalog does not record which rule placed an object when it was written: this is
    ``policy explain`` re-run on the object's facts now. ``matches_current`` says whether the
    object is where that rule would put it (a policy change since, or a failed write awaiting
    repair, makes it differ); ``missing_targets``/``extra_backends`` say how.
    """

    policy: str
    rule: str
    rule_line: int
    description: str | None
    classification: str
    classification_source: str
    reasons: list[str]
    targets: list[str]
    write_quorum: int
    #: Whether the size took part: a multipart upload is placed before its size is known.
    size_known: bool
    matches_current: bool
    missing_targets: list[str]
    extra_backends: list[str]
    note: str


class TransparencyRecord(_Document):
    """Everything an auditor asks about one object (schema ``blindstore.transparency/1``)."""

    schema_id: Literal["blindstore.transparency/1"] = Field(
        default="blindstore.transparency/1", alias="schema"
    )
    tenant: str
    bucket: str
    key: str
    object_id: str
    size: int
    etag: str
    content_type: str | None
    classification_header: str | None
    tags: dict[str, str]
    replicas: list[Replica]
    key_custodian: KeyCustodian
    #: None when the instance routes by no placement policy (every object to ``storage``).
    placement: PlacementReason | None
    #: Origin system, consent reference, legal basis... as the client declared them.
    provenance: dict[str, str]
    retention_until: float | None
    retention_until_iso: str | None
    written: float
    written_iso: str
    #: The last recorded read (None: never read, or the audit trail is not available).
    last_accessed: float | None
    last_accessed_iso: str | None
    #: When the object's last replica failed verification (docs/format.md §9): null while
    #: healthy; ``blindstore repair`` lifts it once a replica verifies again.
    quarantined: float | None = None
    quarantined_iso: str | None = None


class Usage(_Frozen):
    """Objects and plaintext bytes held by one backend, provider or jurisdiction."""

    name: str
    objects: int
    bytes: int


class BackendUsage(_Frozen):
    """What one backend holds, with its facts; ``pending_repair_*``: copies it still lacks."""

    backend: BackendFacts
    objects: int
    bytes: int
    pending_repair_objects: int
    pending_repair_bytes: int


class Summary(_Document):
    """Where a bucket's or a tenant's objects are (schema ``blindstore.transparency-summary/1``).

    ``objects``/``bytes``: each object once. Per backend, an object counts on every backend that
    holds a replica; per provider and per jurisdiction, once for each provider (jurisdiction)
    holding at least one replica, so those columns may add up to more than the total. Bytes are
    plaintext sizes; ciphertext is a little larger. Backends the policy does not declare appear
    under provider and jurisdiction ``undeclared``.
    """

    schema_id: Literal["blindstore.transparency-summary/1"] = Field(
        default="blindstore.transparency-summary/1", alias="schema"
    )
    scope: Literal["bucket", "tenant"]
    tenant: str
    bucket: str | None
    objects: int
    bytes: int
    #: Objects with at least one replica still to copy (``blindstore repair``).
    pending_repair_objects: int
    backends: list[BackendUsage]
    providers: list[Usage]
    jurisdictions: list[Usage]


# ---------------------------------------------------------------------------- one object


async def object_transparency(
    source: TransparencySource,
    settings: Settings,
    bucket: str,
    key: str,
    *,
    tenant: str | None = None,
) -> TransparencyRecord:
    """The transparency record of ``bucket``/``key``.

    ``tenant`` (a name), if given, must own the bucket: another tenant's bucket is reported as
    missing (NoSuchBucket), so that a scoped caller learns nothing of it. NoSuchKey if there is
    no such object.
    """
    catalog = source.catalog
    owner = await _bucket_owner(catalog, bucket, tenant)
    record = await catalog.get_object(bucket, key)
    if record is None:
        raise NoSuchKey(Key=key)
    policy = source.current_policy()
    facts = _facts(owner, record)
    revoked = await catalog.revoked_key_names()
    last = await catalog.last_access(record.object_id)
    return TransparencyRecord(
        tenant=owner.name,
        bucket=bucket,
        key=key,
        object_id=record.object_id.hex(),
        size=record.size,
        etag=record.etag,
        content_type=record.headers.get("content-type"),
        classification_header=facts.classification,
        tags=dict(record.tags),
        replicas=[
            *(
                Replica(backend=_backend(policy, settings, n), status="stored")
                for n in record.backends
            ),
            *(
                Replica(backend=_backend(policy, settings, n), status="pending_repair")
                for n in record.repairs
                if n not in record.backends
            ),
        ],
        key_custodian=await _custodian(catalog, settings, owner, record, revoked),
        placement=None if policy is None else _placement(policy, facts, record),
        provenance=dict(record.provenance),
        retention_until=record.retention_until,
        retention_until_iso=_iso(record.retention_until),
        written=record.last_modified,
        written_iso=_iso(record.last_modified) or "",
        last_accessed=last,
        last_accessed_iso=_iso(last),
        quarantined=record.quarantined,
        quarantined_iso=_iso(record.quarantined),
    )


async def _bucket_owner(catalog: Catalog, bucket: str, tenant: str | None) -> Tenant:
    found = await catalog.get_bucket(bucket)
    owner = None if found is None else await catalog.get_tenant(found.tenant_id)
    if owner is None or (tenant is not None and owner.name != tenant):
        raise NoSuchBucket(BucketName=bucket)
    return owner


def _facts(owner: Tenant, record: ObjectRecord) -> ObjectFacts:
    """The facts the gateway placed ``record`` by (``Gateway._place``). A single PUT or a copy
    knew its size; a multipart upload was placed at its creation, size unknown."""
    single = len(record.parts) == 1 and record.parts[0].part_number == 0
    return ObjectFacts(
        tenant=owner.name,
        bucket=record.bucket,
        key=record.key,
        tags=dict(record.tags),
        classification=record.user_metadata.get(_CLASSIFICATION_META),
        size=record.size if single else None,
        content_type=record.headers.get("content-type"),
    )


async def _custodian(
    catalog: Catalog,
    settings: Settings,
    owner: Tenant,
    record: ObjectRecord,
    revoked: frozenset[str],
) -> KeyCustodian:
    scope: Literal["tenant", "data_subject", "other"] = "other"
    if record.key_name == owner.key_name:
        scope = "tenant"
    elif is_subject_key(record.key_name):
        scope = "data_subject"
    version = record.key_version
    bucket_key_id = None
    bucket_wrapped = BUCKET_WRAPPED_FORM.fullmatch(record.wrapped_dek)
    if bucket_wrapped is not None:
        bucket_key_id = bucket_wrapped.group(1)
        # A rewrap moves the bucket key's row to a newer version; the object row keeps the
        # version it was written under.
        row = await catalog.get_bucket_key(bytes.fromhex(bucket_key_id))
        if row is not None:
            version = row.key_version
    return KeyCustodian(
        vault_addr=settings.vault.addr,
        transit_mount=settings.vault.mount,
        key_name=record.key_name,
        key_version=version,
        scope=scope,
        wrapping="transit" if bucket_key_id is None else "bucket_key",
        bucket_key_id=bucket_key_id,
        shredded=record.key_name in revoked,
    )


def _placement(policy: Policy, facts: ObjectFacts, record: ObjectRecord) -> PlacementReason:
    explanation = explain(policy, facts)
    rule = explanation.matched.rule
    targets = list(explanation.placement.targets)
    held = set(record.backends)
    missing = [t for t in targets if t not in held]
    extra = [b for b in record.backends if b not in targets]
    return PlacementReason(
        policy=policy.source,
        rule=rule.name,
        rule_line=rule.line,
        description=rule.description,
        classification=explanation.classification.value,
        classification_source=explanation.classification.source,
        reasons=list(explanation.placement.reasons),
        targets=targets,
        write_quorum=explanation.placement.quorum,
        size_known=facts.size is not None,
        matches_current=not missing and not extra,
        missing_targets=missing,
        extra_backends=extra,
        note=(
            "the rule that would place this object now, under the current policy; the catalog "
            "records where the object is, not the rule that placed it when it was written"
        ),
    )


def _backend(policy: Policy | None, settings: Settings, name: str) -> BackendFacts:
    declared = None if policy is None else policy.backends.get(name)
    if declared is not None:
        return _declared(declared)
    kind = settings.storage.backend if name == settings.storage.name else "unknown"
    return BackendFacts(
        name=name,
        kind=kind,
        declared=False,
        provider=None,
        region=None,
        country=None,
        jurisdiction=None,
        certifications=[],
        hds_activities=dict.fromkeys(HdsActivity),
        uncarried_activities=list(HdsActivity),
        description=None,
    )


def _declared(backend: Backend) -> BackendFacts:
    carriers = {a: (backend.hds_activities.get(a) or "").strip() or None for a in HdsActivity}
    return BackendFacts(
        name=backend.name,
        kind=backend.kind,
        declared=True,
        provider=backend.provider,
        region=backend.region,
        country=backend.country,
        jurisdiction=backend.jurisdiction,
        certifications=list(backend.certifications),
        hds_activities=carriers,
        uncarried_activities=[a for a, who in carriers.items() if who is None],
        description=backend.description,
    )


def _iso(when: float | None) -> str | None:
    return None if when is None else datetime.fromtimestamp(when, UTC).isoformat()


# ---------------------------------------------------------------------------- summaries

#: Provider and jurisdiction of a backend the policy does not declare.
UNDECLARED = "undeclared"


async def bucket_summary(
    source: TransparencySource, settings: Settings, bucket: str, *, tenant: str | None = None
) -> Summary:
    """Where the objects of ``bucket`` are; ``tenant`` scopes it as in ``object_transparency``."""
    owner = await _bucket_owner(source.catalog, bucket, tenant)
    usage = await source.catalog.replica_usage(bucket=bucket)
    return summarise(usage, source.current_policy(), settings, owner.name, bucket)


async def tenant_summary(source: TransparencySource, settings: Settings, tenant: str) -> Summary:
    """Where every object of the tenant named ``tenant`` is; NoSuchTenant if there is none."""
    owner = await source.catalog.get_tenant_by_name(tenant)
    if owner is None:
        raise NoSuchTenant(f"no tenant named {tenant!r}")
    usage = await source.catalog.replica_usage(tenant_id=owner.tenant_id)
    return summarise(usage, source.current_policy(), settings, owner.name, None)


def summarise(
    usage: Iterable[ReplicaUsage],
    policy: Policy | None,
    settings: Settings,
    tenant: str,
    bucket: str | None,
) -> Summary:
    """A ``Summary`` from the catalog's per-replica-set counts (pure)."""
    facts: dict[str, BackendFacts] = {}
    per_backend: dict[str, list[int]] = {}  # objects, bytes, pending objects, pending bytes
    providers: dict[str, list[int]] = {}
    jurisdictions: dict[str, list[int]] = {}
    objects = size = pending = 0

    def tally(table: dict[str, list[int]], names: Iterable[str], count: int, total: int) -> None:
        for name in dict.fromkeys(names):
            row = table.setdefault(name, [0, 0])
            row[0] += count
            row[1] += total

    for group in usage:
        objects += group.objects
        size += group.bytes
        repairs = [n for n in group.repairs if n not in group.backends]
        if repairs:
            pending += group.objects
        for name in (*group.backends, *repairs):
            if name not in facts:
                facts[name] = _backend(policy, settings, name)
            row = per_backend.setdefault(name, [0, 0, 0, 0])
            offset = 0 if name in group.backends else 2
            row[offset] += group.objects
            row[offset + 1] += group.bytes
        held = [facts[n] for n in group.backends]
        tally(providers, (b.provider or UNDECLARED for b in held), group.objects, group.bytes)
        tally(
            jurisdictions, (b.jurisdiction or UNDECLARED for b in held), group.objects, group.bytes
        )
    return Summary(
        scope="tenant" if bucket is None else "bucket",
        tenant=tenant,
        bucket=bucket,
        objects=objects,
        bytes=size,
        pending_repair_objects=pending,
        backends=[
            BackendUsage(
                backend=facts[name],
                objects=row[0],
                bytes=row[1],
                pending_repair_objects=row[2],
                pending_repair_bytes=row[3],
            )
            for name, row in sorted(per_backend.items())
        ],
        providers=[Usage(name=n, objects=o, bytes=b) for n, (o, b) in sorted(providers.items())],
        jurisdictions=[
            Usage(name=n, objects=o, bytes=b) for n, (o, b) in sorted(jurisdictions.items())
        ],
    )
