"""What the SDK returns: small frozen dataclasses, and TypedDicts for JSON documents whose shape
the admin plane owns (audit records, transparency records, placement explanations)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypedDict, TypeVar

T = TypeVar("T")

# -- S3 data plane ---------------------------------------------------------------------------

#: Request and response headers of the provenance fields (docs/sdk.md, docs/operations.md).
PROVENANCE_HEADERS = {
    "origin_system": "x-blindstore-origin-system",
    "consent_ref": "x-blindstore-consent-ref",
    "legal_basis": "x-blindstore-legal-basis",
    "retention_until": "x-blindstore-retention-until",
}
#: The request header naming an object's data subject (its own Transit key).
SUBJECT_HEADER = "x-blindstore-data-subject"


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where an object's data came from, on what consent and legal basis, until when to keep it.

    ``retention_until`` is a date (kept until 00:00 UTC that day), an aware datetime, or an
    ISO 8601 string (``2031-12-31`` or ``2031-12-31T23:59:59Z``).
    """

    origin_system: str | None = None
    consent_ref: str | None = None
    legal_basis: str | None = None
    retention_until: str | date | datetime | None = None

    def headers(self) -> dict[str, str]:
        """The request headers stating these fields (absent fields send no header)."""
        values: dict[str, str] = {}
        for name in ("origin_system", "consent_ref", "legal_basis"):
            value = getattr(self, name)
            if value is not None:
                values[PROVENANCE_HEADERS[name]] = value
        if self.retention_until is not None:
            values[PROVENANCE_HEADERS["retention_until"]] = _iso(self.retention_until)
        return values

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Provenance:
        lowered = {k.lower(): v for k, v in headers.items()}
        return cls(**{name: lowered.get(header) for name, header in PROVENANCE_HEADERS.items()})

    def __bool__(self) -> bool:
        return any(
            v is not None
            for v in (self.origin_system, self.consent_ref, self.legal_basis, self.retention_until)
        )


def _iso(value: str | date | datetime) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("retention_until needs a time zone (an aware datetime)")
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """An object's metadata, as HEAD (or GET) returns it."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime | None
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int
    etag: str
    last_modified: datetime | None


@dataclass(frozen=True, slots=True)
class ObjectPage:
    """One page of a listing: objects, and the common prefixes when a delimiter was given."""

    objects: list[ListedObject]
    prefixes: list[str]


# -- admin plane -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Health:
    status: str


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    tenant_id: str
    transit_key: str
    container: str
    created: float
    shredded: float | None = None


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An access key as listings show it: never its secret."""

    access_key_id: str
    created: float


@dataclass(frozen=True, slots=True)
class NewAccessKey:
    """A new key pair: the only time its secret is shown."""

    tenant: str
    access_key_id: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class NewTenant:
    tenant: Tenant
    access_key: NewAccessKey


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next`` as ``after`` for the following one (None: done)."""

    items: list[T]
    next: str | None


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class PolicyValidation:
    valid: bool
    problems: list[PolicyProblem]
    backends: int
    rules: int


class BackendFacts(TypedDict):
    name: str
    kind: str
    provider: str
    region: str | None
    country: str | None
    jurisdiction: str
    certifications: list[str]
    hds_activities: dict[str, str | None]
    description: str | None


class ExplainedRule(TypedDict):
    name: str
    line: int
    description: str | None
    reasons: list[str]


class Explanation(TypedDict):
    """Which rule places an object, why, and on which backends (``POST /-/policy/explain``)."""

    object: dict[str, Any]
    classification: dict[str, Any]
    rule: ExplainedRule
    skipped: list[dict[str, Any]]
    targets: list[BackendFacts]
    write_quorum: int


#: A transparency record or summary (``/-/transparency/...``): replicas with their backend's
#: facts, key custodian, placing rule, HDS activity carriers, provenance... (docs/sdk.md).
TransparencyRecord = dict[str, Any]


class AuditRecord(TypedDict, total=False):
    """One record of the audit trail (``blindstore audit export`` writes the same objects)."""

    seq: int
    time: float
    at: str
    request_id: str
    principal: str
    tenant_id: str | None
    tenant: str | None
    operation: str
    bucket: str | None
    key: str | None
    object_id: str | None
    version: str | None
    backends: list[str]
    key_name: str | None
    key_version: int | None
    result: str
    bytes: int
    source: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditPage:
    records: list[AuditRecord]
    #: Pass as ``after`` for the next page; None when there is no more.
    next: str | None


@dataclass(frozen=True, slots=True)
class AuditProblem:
    seq: int | None
    #: What is wrong: an edited, deleted, inserted or reordered record, a bad checkpoint...
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class AuditVerification:
    intact: bool
    records: int
    problems: list[AuditProblem]
    last_checkpoint: Any = None
    #: The whole answer, for fields this SDK version does not model.
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
