"""``explain(policy, facts)``: which rule places an object, why the earlier ones did not, and
the facts of each target an auditor asks about (never their connection settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blindstore.policy.engine import Classified, Verdict, placement_of, trace
from blindstore.policy.model import Backend, HdsActivity, ObjectFacts, Placement, Policy
from blindstore.provenance import HEADERS

__all__ = ["Explanation", "backend_facts", "explain"]


@dataclass(frozen=True, slots=True)
class Explanation:
    facts: ObjectFacts
    classification: Classified
    #: Every rule tried, in order; the last one matched.
    verdicts: tuple[Verdict, ...]
    placement: Placement
    targets: tuple[Backend, ...]

    @property
    def matched(self) -> Verdict:
        return self.verdicts[-1]

    @property
    def skipped(self) -> tuple[Verdict, ...]:
        return self.verdicts[:-1]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``blindstore policy explain --json``)."""
        facts = self.facts
        rule = self.matched.rule
        return {
            "object": {
                "tenant": facts.tenant,
                "bucket": facts.bucket,
                "key": facts.key,
                "tags": dict(facts.tags),
                "classification_header": facts.classification,
                "size": facts.size,
                "content_type": facts.content_type,
            },
            "classification": {
                "value": self.classification.value,
                "source": self.classification.source,
                "unknown_value": self.classification.unknown,
            },
            "rule": {
                "name": rule.name,
                "line": rule.line,
                "description": rule.description,
                "reasons": list(self.matched.reasons),
                # Provenance the object must carry, as field names and as request headers.
                "require": list(rule.require),
                "require_headers": [HEADERS[name] for name in rule.require],
            },
            "skipped": [
                {"rule": v.rule.name, "line": v.rule.line, "reason": v.reasons[0]}
                for v in self.skipped
            ],
            "targets": [backend_facts(b) for b in self.targets],
            "write_quorum": self.placement.quorum,
        }


def backend_facts(backend: Backend) -> dict[str, Any]:
    """A backend's auditable facts as JSON-ready values; ``settings`` stay out (secrets)."""
    return {
        "name": backend.name,
        "kind": backend.kind,
        "provider": backend.provider,
        "region": backend.region,
        "country": backend.country,
        "jurisdiction": backend.jurisdiction,
        "certifications": list(backend.certifications),
        "hds_activities": {a.value: backend.hds_activities.get(a) for a in HdsActivity},
        "description": backend.description,
    }


def explain(policy: Policy, facts: ObjectFacts) -> Explanation:
    """Everything ``decide`` considered for ``facts``, and its decision."""
    classified, verdicts = trace(policy, facts)
    placement = placement_of(classified, verdicts)
    return Explanation(
        facts=facts,
        classification=classified,
        verdicts=verdicts,
        placement=placement,
        targets=tuple(policy.backends[name] for name in placement.targets),
    )
