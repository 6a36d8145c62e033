"""The placement policy as values: backends with their facts, rules, constraints, and the facts
of one object. Everything is frozen; ``blindstore.policy.load`` builds them from YAML and refuses
a policy that breaks its own constraints, so code holding a ``Policy`` can trust it.

Fields named ``line`` are the 1-based line of the YAML that declared the value (0 when built in
code). They serve error messages and ``explain`` only and never take part in equality.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "DEFAULT_CLASSIFICATION",
    "DEFAULT_CLASSIFICATIONS",
    "HDS",
    "KNOWN_KINDS",
    "Backend",
    "BucketDefaults",
    "Constraint",
    "HdsActivity",
    "Match",
    "ObjectFacts",
    "Placement",
    "Policy",
    "Requirement",
    "Rule",
    "SizeRange",
]

#: Least to most sensitive. A classification a client sends that the policy does not declare is
#: treated as the most sensitive one (the last), so a typo never sends data somewhere laxer.
DEFAULT_CLASSIFICATIONS: Final = ("anonymous", "unclassified", "pseudonymized", "identifying")
DEFAULT_CLASSIFICATION: Final = "unclassified"

#: The certification whose holders must say who carries each of the six hosting activities.
HDS: Final = "HDS"

#: Backend kinds the gateway can build; their ``settings`` are checked by the backend factories.
KNOWN_KINDS: Final = frozenset({"local", "memory", "s3", "azure", "gcs"})


def _frozen_empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


class HdsActivity(StrEnum):
    """The six activities of health-data hosting that HDS certification covers.

    French Code de la santé publique, art. R.1111-9. The values are stable ids used in policy
    files and JSON output.
    """

    PHYSICAL_SITES = "physical_sites"
    HARDWARE = "hardware"
    VIRTUAL_INFRASTRUCTURE = "virtual_infrastructure"
    APPLICATION_PLATFORM = "application_platform"
    ADMINISTRATION_OPERATION = "administration_operation"
    BACKUP = "backup"

    @property
    def label(self) -> str:
        return _ACTIVITY_LABELS[self]


_ACTIVITY_LABELS: Final = {
    HdsActivity.PHYSICAL_SITES: "physical sites",
    HdsActivity.HARDWARE: "hardware infrastructure",
    HdsActivity.VIRTUAL_INFRASTRUCTURE: "virtual infrastructure",
    HdsActivity.APPLICATION_PLATFORM: "application hosting platform",
    HdsActivity.ADMINISTRATION_OPERATION: "administration and operation",
    HdsActivity.BACKUP: "backup",
}


@dataclass(frozen=True, slots=True)
class Backend:
    """A storage backend and the facts an auditor asks about.

    ``settings`` (endpoint, credential references, paths) is opaque here: the backend factory
    of ``kind`` validates it. It may name secrets, so it is kept out of ``repr`` and of
    ``explain``.
    """

    name: str
    kind: str
    provider: str
    jurisdiction: str
    region: str | None = None
    country: str | None = None
    certifications: tuple[str, ...] = ()
    #: Who carries each HDS activity; an activity absent here is undeclared.
    hds_activities: Mapping[HdsActivity, str] = field(default_factory=_frozen_empty)
    description: str | None = None
    settings: Mapping[str, object] = field(default_factory=_frozen_empty, repr=False, compare=False)
    line: int = field(default=0, compare=False)
    #: Line of each field that was given (``certifications``, ``hds_activities``...).
    lines: Mapping[str, int] = field(default_factory=_frozen_empty, repr=False, compare=False)

    def where(self, field_name: str) -> int:
        return self.lines.get(field_name, self.line)


@dataclass(frozen=True, slots=True)
class BucketDefaults:
    """What the policy says about one bucket: the classification of objects that carry none."""

    bucket: str
    classification: str
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class SizeRange:
    """Sizes ``at_least <= size < below``; a missing bound is open."""

    at_least: int | None = None
    below: int | None = None

    def __contains__(self, size: int) -> bool:
        return (self.at_least is None or size >= self.at_least) and (
            self.below is None or size < self.below
        )


@dataclass(frozen=True, slots=True)
class Match:
    """The conditions of a rule. All given conditions must hold; a list means any of its values.

    ``None`` (or no tags) means "no condition on this field". A ``Match()`` matches everything.
    """

    tenants: tuple[str, ...] | None = None
    buckets: tuple[str, ...] | None = None
    key_prefixes: tuple[str, ...] | None = None
    key_globs: tuple[str, ...] | None = None
    #: Tag key -> accepted values; every listed tag must be present with one of its values.
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=_frozen_empty)
    classifications: tuple[str, ...] | None = None
    size: SizeRange | None = None
    #: Media ranges: ``type/subtype``, ``type/*`` or ``*/*``, lower case.
    content_types: tuple[str, ...] | None = None

    @property
    def is_catch_all(self) -> bool:
        return self == Match()

    @property
    def only_classification(self) -> bool:
        """True when classification is the sole condition (or there is none)."""
        return Match(classifications=self.classifications) == self


@dataclass(frozen=True, slots=True)
class Rule:
    """If ``match`` holds, write to every backend of ``targets``; succeed once ``write_quorum``
    of them hold the object."""

    name: str
    match: Match
    targets: tuple[str, ...]
    write_quorum: int
    description: str | None = None
    #: Provenance fields an object placed by this rule must carry (``blindstore.provenance``:
    #: ``origin_system``, ``consent_ref``, ``legal_basis``, ``retention_until``); a write
    #: without them is refused before anything is stored.
    require: tuple[str, ...] = ()
    line: int = field(default=0, compare=False)
    #: Line of each field that was given (``targets``, ``write_quorum``, ``match.size``...).
    lines: Mapping[str, int] = field(default_factory=_frozen_empty, repr=False, compare=False)

    def where(self, field_name: str) -> int:
        """The line of ``field_name`` if it was given, else the rule's."""
        return self.lines.get(field_name, self.line)


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a backend must be. ``jurisdictions``: one of them; ``certifications``: all of them."""

    jurisdictions: tuple[str, ...] | None = None
    certifications: tuple[str, ...] = ()

    def failures(self, backend: Backend) -> tuple[str, ...]:
        """Why ``backend`` does not satisfy this requirement (empty when it does)."""
        found: list[str] = []
        if self.jurisdictions is not None and backend.jurisdiction not in self.jurisdictions:
            wanted = " or ".join(self.jurisdictions)
            found.append(f"jurisdiction {wanted} (it is {backend.jurisdiction})")
        missing = [c for c in self.certifications if c not in backend.certifications]
        if missing:
            held = ", ".join(backend.certifications) or "none"
            found.append(f"certification {', '.join(missing)} (it holds: {held})")
        return tuple(found)

    def describe(self) -> str:
        parts = []
        if self.jurisdictions is not None:
            parts.append(f"jurisdiction {' or '.join(self.jurisdictions)}")
        if self.certifications:
            parts.append(f"certifications {', '.join(self.certifications)}")
        return " and ".join(parts)


@dataclass(frozen=True, slots=True)
class Constraint:
    """Objects of these classifications may only be placed on backends meeting ``require``."""

    classifications: tuple[str, ...]
    require: Requirement
    name: str | None = None
    line: int = field(default=0, compare=False)
    lines: Mapping[str, int] = field(default_factory=_frozen_empty, repr=False, compare=False)

    @property
    def label(self) -> str:
        """``constraint 'name'``, or a description when it has no name."""
        if self.name:
            return f"constraint {self.name!r}"
        return f"the constraint on {' or '.join(self.classifications)}"

    def where(self, field_name: str) -> int:
        return self.lines.get(field_name, self.line)


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated placement policy. The last rule (or the rules together) match every object."""

    backends: Mapping[str, Backend]
    rules: tuple[Rule, ...]
    classifications: tuple[str, ...] = DEFAULT_CLASSIFICATIONS
    default_classification: str = DEFAULT_CLASSIFICATION
    buckets: Mapping[str, BucketDefaults] = field(default_factory=_frozen_empty)
    constraints: tuple[Constraint, ...] = ()
    version: int = 1
    #: Where the policy came from (a file name), for messages.
    source: str = field(default="<policy>", compare=False)
    #: Line of each top-level field that was given (``rules``, ``classifications``...).
    lines: Mapping[str, int] = field(default_factory=_frozen_empty, repr=False, compare=False)

    def where(self, field_name: str) -> int:
        return self.lines.get(field_name, 1)

    @property
    def most_sensitive(self) -> str:
        return self.classifications[-1]


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What the gateway knows about an object when it must place it.

    ``classification`` is the raw ``x-amz-meta-classification`` header, if any. ``size`` is
    ``None`` when unknown at placement time (a multipart upload is placed when it is created).
    """

    tenant: str
    bucket: str
    key: str
    tags: Mapping[str, str] = field(default_factory=_frozen_empty)
    classification: str | None = None
    size: int | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an object goes: the rule that decided, its targets and write quorum, and why."""

    rule: str
    targets: tuple[str, ...]
    quorum: int
    classification: str
    reasons: tuple[str, ...]
    #: Provenance fields the object must carry (the rule's ``require``).
    require: tuple[str, ...] = ()
