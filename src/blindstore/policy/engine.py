"""``decide(policy, facts)``: the first rule whose conditions all hold places the object.

Pure, deterministic and total: a policy from ``blindstore.policy.load`` always has a rule for
every object (the loader refuses one that does not), and the classification always resolves to
one the policy declares. No clock, no randomness, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

from blindstore.errors import PolicyError
from blindstore.policy.model import Match, ObjectFacts, Placement, Policy, Rule, SizeRange
from blindstore.policy.units import format_size

__all__ = [
    "CLASSIFICATION_HEADER",
    "CLASSIFICATION_TAG",
    "Classified",
    "Verdict",
    "decide",
    "evaluate",
    "media_range_covers",
    "media_type",
    "placement_of",
    "resolve_classification",
    "trace",
]

CLASSIFICATION_HEADER: Final = "x-amz-meta-classification"
CLASSIFICATION_TAG: Final = "classification"


@dataclass(frozen=True, slots=True)
class Classified:
    """An object's classification and where it came from."""

    value: str
    #: ``header``, ``tag``, ``bucket`` or ``default``.
    source: str
    #: The raw value the client sent when the policy does not declare it (then ``value`` is the
    #: most sensitive classification).
    unknown: str | None = None

    def describe(self) -> str:
        where = {
            "header": f"the {CLASSIFICATION_HEADER} header",
            "tag": f"the {CLASSIFICATION_TAG!r} tag",
            "bucket": "the bucket's default in the policy",
            "default": "the policy's default",
        }[self.source]
        if self.unknown is not None:
            return (
                f"{where} says {self.unknown!r}, which the policy does not declare: "
                f"classified {self.value!r}, the most sensitive"
            )
        return f"classification {self.value!r} comes from {where}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One rule against one object: every reason when it matched, else the first failure."""

    rule: Rule
    matched: bool
    reasons: tuple[str, ...]


def _declared(policy: Policy, raw: str, source: str) -> Classified:
    value = raw.strip().lower()
    if value in policy.classifications:
        return Classified(value, source)
    return Classified(policy.most_sensitive, source, unknown=raw)


def resolve_classification(policy: Policy, facts: ObjectFacts) -> Classified:
    """Header ``x-amz-meta-classification``, else tag ``classification``, else the bucket's
    default in the policy, else the policy's default. Blank values count as absent; values
    compare case-insensitively; an undeclared value becomes the most sensitive classification.
    """
    if facts.classification is not None and facts.classification.strip():
        return _declared(policy, facts.classification, "header")
    tag = facts.tags.get(CLASSIFICATION_TAG)
    if tag is not None and tag.strip():
        return _declared(policy, tag, "tag")
    bucket = policy.buckets.get(facts.bucket)
    if bucket is not None:
        return Classified(bucket.classification, "bucket")
    return Classified(policy.default_classification, "default")


def media_type(content_type: str) -> str:
    """``type/subtype`` of a Content-Type, lower case, parameters dropped."""
    return content_type.split(";", 1)[0].strip().lower()


def media_range_covers(pattern: str, media: str) -> bool:
    """Does media range ``pattern`` (``*/*``, ``type/*``, ``type/sub``) admit ``media``? Also
    true when ``media`` is itself a range inside ``pattern``."""
    if pattern in ("*/*", media):
        return True
    return pattern.endswith("/*") and media.startswith(pattern[:-1])


def _alternatives(values: tuple[str, ...]) -> str:
    return " or ".join(repr(v) for v in values)


def _one_of(field: str, value: str, accepted: tuple[str, ...]) -> tuple[bool, str]:
    if value in accepted:
        return True, f"{field} is {value!r}"
    return False, f"{field} {value!r} is not {_alternatives(accepted)}"


def _conditions(
    match: Match, facts: ObjectFacts, classified: Classified
) -> Iterator[tuple[bool, str]]:
    """(held, why) for each condition of ``match``, in a fixed order, lazily."""
    if match.tenants is not None:
        yield _one_of("tenant", facts.tenant, match.tenants)
    if match.buckets is not None:
        yield _one_of("bucket", facts.bucket, match.buckets)
    if match.key_prefixes is not None:
        prefix = next((p for p in match.key_prefixes if facts.key.startswith(p)), None)
        if prefix is None:
            yield (
                False,
                (f"key {facts.key!r} does not start with {_alternatives(match.key_prefixes)}"),
            )
        else:
            yield True, f"key {facts.key!r} starts with {prefix!r}"
    if match.key_globs is not None:
        glob = next((g for g in match.key_globs if fnmatchcase(facts.key, g)), None)
        if glob is None:
            yield False, f"key {facts.key!r} does not match {_alternatives(match.key_globs)}"
        else:
            yield True, f"key {facts.key!r} matches {glob!r}"
    for tag, accepted in match.tags.items():
        value = facts.tags.get(tag)
        if value is None:
            yield False, f"tag {tag!r} is absent"
        elif value not in accepted:
            yield False, f"tag {tag}={value!r} is not {_alternatives(accepted)}"
        else:
            yield True, f"tag {tag}={value!r}"
    if match.classifications is not None:
        if classified.value in match.classifications:
            yield True, f"classification is {classified.value!r}"
        else:
            yield (
                False,
                (
                    f"classification {classified.value!r} is not "
                    f"{_alternatives(match.classifications)}"
                ),
            )
    if match.size is not None:
        yield _size_condition(match.size, facts.size)
    if match.content_types is not None:
        if not facts.content_type:
            yield False, "the object has no content type"
        else:
            media = media_type(facts.content_type)
            pattern = next((p for p in match.content_types if media_range_covers(p, media)), None)
            if pattern is None:
                yield False, (f"content type {media!r} is not {_alternatives(match.content_types)}")
            else:
                yield True, f"content type {media!r} matches {pattern!r}"


def _size_condition(bounds: SizeRange, size: int | None) -> tuple[bool, str]:
    low, high = bounds.at_least, bounds.below
    if size is None:
        return False, "the size is not known yet (e.g. a multipart upload)"
    shown = format_size(size)
    if low is not None and size < low:
        return False, f"size {shown} is below {format_size(low)}"
    if high is not None and size >= high:
        return False, f"size {shown} is not below {format_size(high)}"
    held = []
    if low is not None:
        held.append(f"at least {format_size(low)}")
    if high is not None:
        held.append(f"below {format_size(high)}")
    return True, f"size {shown} is {' and '.join(held)}"


def evaluate(rule: Rule, facts: ObjectFacts, classified: Classified) -> Verdict:
    """Does ``rule`` match? Stops at the first condition that fails."""
    reasons: list[str] = []
    for held, why in _conditions(rule.match, facts, classified):
        if not held:
            return Verdict(rule, matched=False, reasons=(why,))
        reasons.append(why)
    return Verdict(rule, matched=True, reasons=tuple(reasons) or ("the rule matches every object",))


def trace(policy: Policy, facts: ObjectFacts) -> tuple[Classified, tuple[Verdict, ...]]:
    """The classification, then the verdict of every rule up to and including the one that
    matched (the last verdict)."""
    classified = resolve_classification(policy, facts)
    verdicts: list[Verdict] = []
    for rule in policy.rules:
        verdict = evaluate(rule, facts, classified)
        verdicts.append(verdict)
        if verdict.matched:
            return classified, tuple(verdicts)
    # A loaded policy cannot get here (the loader proves every object has a rule); only a Policy
    # assembled by hand without a catch-all can.
    raise PolicyError(policy.source, [(0, "no rule matches this object: the rules are not total")])


def placement_of(classified: Classified, verdicts: tuple[Verdict, ...]) -> Placement:
    """The placement a ``trace`` ends in."""
    chosen = verdicts[-1]
    return Placement(
        rule=chosen.rule.name,
        targets=chosen.rule.targets,
        quorum=chosen.rule.write_quorum,
        classification=classified.value,
        reasons=(classified.describe(), *chosen.reasons),
        require=chosen.rule.require,
    )


def decide(policy: Policy, facts: ObjectFacts) -> Placement:
    """Where ``facts``' object goes, by the first rule that matches it."""
    return placement_of(*trace(policy, facts))
