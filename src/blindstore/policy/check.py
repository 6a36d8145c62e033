"""What makes a policy meaningful, checked on the model (the loader has already checked types):

- names are well formed and unique; every reference (backend, classification) is declared;
- every rule has targets and a write quorum between 1 and their number;
- a backend certified HDS says who carries each of the six hosting activities;
- no rule is dead: none whose every possible object an earlier rule already takes;
- every object has a rule (the rules are total, so ``decide`` is);
- no rule can put data of a constrained classification on a backend the constraint forbids.
  A rule without a classification condition receives every classification that earlier rules
  have not fully taken, so it is checked against those constraints too.

The dead-rule analysis is sound, not complete: it finds a rule shadowed by one earlier rule whose
every condition it implies, and a rule whose classifications were all taken by earlier rules
that test nothing but the classification. Anything it reports is really dead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from blindstore.policy.engine import media_range_covers
from blindstore.policy.model import (
    HDS,
    KNOWN_KINDS,
    Constraint,
    HdsActivity,
    Match,
    Policy,
    Rule,
)

__all__ = ["Gaps", "Problem", "check"]

#: (line, reason); line 0 when none applies.
Problem = tuple[int, str]

#: Backend names end up in catalog rows; keep them plain.
_BACKEND_NAME: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_RULE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CLASSIFICATION: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_MEDIA_PART: Final = r"[a-z0-9][a-z0-9!#$&^_.+-]*"
_MEDIA_RANGE: Final = re.compile(rf"\*/\*|{_MEDIA_PART}/(?:\*|{_MEDIA_PART})")


@dataclass(frozen=True, slots=True)
class Gaps:
    """What the loader could not read. Checks that depend on it are skipped, so that every
    problem reported is a real one (the rest show up once the reported ones are fixed)."""

    #: Backends declared but unreadable: references to them are not "unknown".
    backends: frozenset[str] = frozenset()
    #: Some rule could not be read: the dead-rule, totality and constraint analysis is skipped.
    rules: bool = False
    #: The classification list could not be read: references to classifications are not checked.
    classifications: bool = False


def _quoted(values: Iterable[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _duplicates(items: Iterable[tuple[str, int]], what: str) -> list[Problem]:
    seen: dict[str, int] = {}
    found: list[Problem] = []
    for name, line in items:
        if name in seen:
            found.append((line, f"duplicate {what} {name!r} (first at line {seen[name]})"))
        else:
            seen[name] = line
    return found


def _check_classifications(policy: Policy) -> list[Problem]:
    where = policy.where("classifications")
    found = [
        (where, f"classification {name!r} must be lower-case letters, digits, '-' or '_'")
        for name in policy.classifications
        if _CLASSIFICATION.fullmatch(name) is None
    ]
    if not policy.classifications:
        found.append((where, "classifications must list at least one classification"))
    found += _duplicates(((c, where) for c in policy.classifications), "classification")
    return found


def _check_default(policy: Policy) -> list[Problem]:
    if policy.default_classification in policy.classifications:
        return []
    return [
        (
            policy.lines.get("default_classification", policy.where("classifications")),
            f"default_classification {policy.default_classification!r} is not one of the "
            f"classifications ({_quoted(policy.classifications)})",
        )
    ]


def _unknown_classes(policy: Policy, names: Iterable[str], line: int, owner: str) -> list[Problem]:
    return [
        (
            line,
            f"{owner}: unknown classification {name!r} "
            f"(declared: {_quoted(policy.classifications)})",
        )
        for name in names
        if name not in policy.classifications
    ]


def _check_backends(policy: Policy) -> list[Problem]:
    found: list[Problem] = []
    for name, backend in policy.backends.items():
        if _BACKEND_NAME.fullmatch(name) is None:
            found.append(
                (
                    backend.line,
                    f"backend name {name!r} must be 1 to 63 lower-case letters, digits or '-', "
                    "starting with a letter or digit",
                )
            )
        if backend.kind not in KNOWN_KINDS:
            found.append(
                (
                    backend.where("kind"),
                    f"backend {name!r}: unknown kind {backend.kind!r} "
                    f"(one of {_quoted(sorted(KNOWN_KINDS))})",
                )
            )
        found += _duplicates(
            ((c, backend.where("certifications")) for c in backend.certifications),
            f"certification of backend {name!r}:",
        )
        missing = [a for a in HdsActivity if a not in backend.hds_activities]
        if HDS in backend.certifications and missing:
            found.append(
                (
                    backend.where("hds_activities")
                    if "hds_activities" in backend.lines
                    else backend.where("certifications"),
                    f"backend {name!r} is certified {HDS} but does not say who carries "
                    f"{_quoted(a.value for a in missing)} (hds_activities)",
                )
            )
    return found


def _check_constraints(policy: Policy, gaps: Gaps) -> list[Problem]:
    found: list[Problem] = []
    for constraint in policy.constraints:
        owner = constraint.label
        if not gaps.classifications:
            found += _unknown_classes(
                policy,
                constraint.classifications,
                constraint.where("classification"),
                owner,
            )
        require = constraint.require
        if require.jurisdictions is None and not require.certifications:
            found.append(
                (
                    constraint.where("require"),
                    f"{owner} requires nothing: give require.jurisdiction or "
                    "require.certifications",
                )
            )
    found += _duplicates(
        ((c.name, c.line) for c in policy.constraints if c.name is not None), "constraint name"
    )
    return found


def _check_match(policy: Policy, rule: Rule, gaps: Gaps) -> list[Problem]:
    match = rule.match
    owner = f"rule {rule.name!r}"
    found: list[Problem] = []
    if match.classifications is not None and not gaps.classifications:
        found += _unknown_classes(
            policy, match.classifications, rule.where("match.classification"), owner
        )
    if match.size is not None:
        low, high = match.size.at_least, match.size.below
        where = rule.where("match.size")
        if low is None and high is None:
            found.append((where, f"{owner}: size needs at_least, below or both"))
        if (low is not None and low < 0) or (high is not None and high < 0):
            found.append((where, f"{owner}: sizes cannot be negative"))
        elif low is not None and high is not None and low >= high:
            found.append(
                (where, f"{owner}: size at_least ({low}) must be less than below ({high})")
            )
    found += [
        (
            rule.where("match.content_type"),
            f"{owner}: {pattern!r} is not a media type (type/subtype, type/* or */*)",
        )
        for pattern in match.content_types or ()
        if _MEDIA_RANGE.fullmatch(pattern) is None
    ]
    return found


def _check_targets(policy: Policy, rule: Rule, gaps: Gaps) -> list[Problem]:
    owner = f"rule {rule.name!r}"
    where = rule.where("targets")
    found: list[Problem] = []
    if not rule.targets:
        found.append((where, f"{owner} has no targets"))
    found += _duplicates(((t, where) for t in rule.targets), f"target in {owner}:")
    declared = ", ".join(sorted({*policy.backends, *gaps.backends})) or "none"
    found += [
        (where, f"{owner}: unknown backend {target!r} (declared: {declared})")
        for target in dict.fromkeys(rule.targets)
        if target not in policy.backends and target not in gaps.backends
    ]
    if rule.targets and not 1 <= rule.write_quorum <= len(rule.targets):
        count = len(rule.targets)
        found.append(
            (
                rule.where("write_quorum"),
                f"{owner}: write_quorum {rule.write_quorum} must be between 1 and its "
                f"{count} target{'s' * (count != 1)}",
            )
        )
    return found


def _check_rules(policy: Policy, gaps: Gaps) -> list[Problem]:
    found: list[Problem] = []
    if not policy.rules and not gaps.rules:
        found.append((policy.where("rules"), "the policy has no rules"))
    for rule in policy.rules:
        if _RULE_NAME.fullmatch(rule.name) is None:
            found.append(
                (
                    rule.where("name"),
                    f"rule name {rule.name!r} must be 1 to 64 letters, digits, '.', '_' or '-'",
                )
            )
        found += _check_match(policy, rule, gaps)
        found += _check_targets(policy, rule, gaps)
    found += _duplicates(((r.name, r.where("name")) for r in policy.rules), "rule name")
    return found


# ---------------------------------------------------------------------------- flow analysis


def _literal_head(glob: str) -> str:
    """The characters every key matching ``glob`` starts with."""
    cut = min((i for i, ch in enumerate(glob) if ch in "*?["), default=len(glob))
    return glob[:cut]


def _prefix_glob(glob: str) -> str | None:
    """``P`` when ``glob`` is ``P*`` with no other wildcard (it then means "starts with P")."""
    head = _literal_head(glob)
    return head if glob == f"{head}*" else None


def _keys_implied(later: Match, earlier: Match) -> bool:
    """Does every key ``later`` admits satisfy ``earlier``'s key conditions?"""
    # What later guarantees: keys start with one of these (from prefixes, or from glob heads).
    guarantees: list[tuple[str, ...]] = []
    if later.key_prefixes is not None:
        guarantees.append(later.key_prefixes)
    if later.key_globs is not None:
        guarantees.append(tuple(_literal_head(g) for g in later.key_globs))
    if earlier.key_prefixes is not None and not any(
        all(any(head.startswith(p) for p in earlier.key_prefixes) for head in heads)
        for heads in guarantees
    ):
        return False
    if earlier.key_globs is None:
        return True
    prefix_globs = [p for p in map(_prefix_glob, earlier.key_globs) if p is not None]
    if "" in prefix_globs:  # a bare `*` matches every key
        return True
    by_globs = later.key_globs is not None and all(
        glob in earlier.key_globs or any(_literal_head(glob).startswith(p) for p in prefix_globs)
        for glob in later.key_globs
    )
    by_prefixes = later.key_prefixes is not None and all(
        any(prefix.startswith(p) for p in prefix_globs) for prefix in later.key_prefixes
    )
    return by_globs or by_prefixes


def _subset(later: tuple[str, ...] | None, earlier: tuple[str, ...] | None) -> bool:
    if earlier is None:
        return True
    return later is not None and set(later) <= set(earlier)


def _implies(later: Match, later_classes: frozenset[str], earlier: Match) -> bool:
    """Is every object ``later`` can receive (with these classifications) matched by
    ``earlier``?"""
    if earlier.classifications is not None and not later_classes <= set(earlier.classifications):
        return False
    if not (_subset(later.tenants, earlier.tenants) and _subset(later.buckets, earlier.buckets)):
        return False
    if not _keys_implied(later, earlier):
        return False
    for tag, accepted in earlier.tags.items():
        if tag not in later.tags or not set(later.tags[tag]) <= set(accepted):
            return False
    if earlier.size is not None:
        if later.size is None:
            return False
        low, high = earlier.size.at_least, earlier.size.below
        if low is not None and (later.size.at_least is None or later.size.at_least < low):
            return False
        if high is not None and (later.size.below is None or later.size.below > high):
            return False
    if earlier.content_types is None:
        return True
    return later.content_types is not None and all(
        any(media_range_covers(p, media) for p in earlier.content_types)
        for media in later.content_types
    )


def _names(rules: Iterable[Rule]) -> str:
    ordered = sorted(rules, key=lambda rule: rule.line)
    return ", ".join(dict.fromkeys(f"rule {r.name!r} (line {r.line})" for r in ordered))


def _constraint_problems(policy: Policy, rule: Rule, reaching: frozenset[str]) -> list[Problem]:
    found: list[Problem] = []
    for constraint in policy.constraints:
        hit = [
            c for c in policy.classifications if c in reaching and c in constraint.classifications
        ]
        if hit:
            found += _breaches(policy, rule, constraint, hit)
    return found


def _breaches(policy: Policy, rule: Rule, constraint: Constraint, hit: list[str]) -> list[Problem]:
    data = " or ".join(hit)
    hint = ""
    if rule.match.classifications is None:
        hint = (
            f"; the rule has no classification condition, so {data} objects that no earlier "
            "rule places reach it"
        )
    found: list[Problem] = []
    for target in dict.fromkeys(rule.targets):
        backend = policy.backends.get(target)
        failures = constraint.require.failures(backend) if backend is not None else ()
        if failures:
            found.append(
                (
                    rule.where("targets"),
                    f"rule {rule.name!r} can place {data} data on backend {target!r}, which "
                    f"breaks {constraint.label} (line {constraint.line}): it requires "
                    f"{' and '.join(failures)}{hint}",
                )
            )
    return found


def _check_flow(policy: Policy) -> list[Problem]:
    """Dead rules, constraint breaches and totality, walking the rules in order."""
    found: list[Problem] = []
    every = frozenset(policy.classifications)
    # Classifications some object may still have when it reaches the next rule, and which rule
    # took each of the others whole.
    remaining = set(every)
    taken_by: dict[str, Rule] = {}
    for index, rule in enumerate(policy.rules):
        match = rule.match
        allowed = every if match.classifications is None else frozenset(match.classifications)
        reaching = allowed & remaining
        if not reaching:
            takers = _names(taken_by[c] for c in policy.classifications if c in allowed)
            found.append(
                (
                    rule.where("name"),
                    f"rule {rule.name!r} can never match: every object it could match is "
                    f"already placed by {takers}",
                )
            )
        elif shadow := next(
            (e for e in policy.rules[:index] if _implies(match, reaching, e.match)), None
        ):
            found.append(
                (
                    rule.where("name"),
                    f"rule {rule.name!r} can never match: earlier rule {shadow.name!r} "
                    f"(line {shadow.line}) matches every object it matches",
                )
            )
        else:
            found += _constraint_problems(policy, rule, reaching)
        if match.only_classification:
            for name in reaching:
                taken_by[name] = rule
            remaining -= allowed
    if remaining and policy.rules:
        left = ", ".join(c for c in policy.classifications if c in remaining)
        found.append(
            (
                policy.where("rules"),
                f"some objects match no rule (classified {left}): end the rules with a "
                "catch-all rule, one without `match`",
            )
        )
    return found


def check(policy: Policy, gaps: Gaps | None = None) -> list[Problem]:
    """Every problem of ``policy``, in line order (empty when it is sound)."""
    gaps = gaps or Gaps()
    found: list[Problem] = []
    class_problems = [] if gaps.classifications else _check_classifications(policy)
    found += class_problems
    found += _check_backends(policy)
    if not gaps.classifications and not class_problems:
        found += _check_default(policy)
        for bucket in policy.buckets.values():
            found += _unknown_classes(
                policy, [bucket.classification], bucket.line, f"bucket {bucket.bucket!r}"
            )
    found += _check_constraints(policy, gaps)
    found += _check_rules(policy, gaps)
    # The flow analysis needs every rule read and every classification a rule names declared.
    declared = set(policy.classifications)
    undeclared = any(
        not declared.issuperset(rule.match.classifications or ()) for rule in policy.rules
    )
    if not (gaps.rules or gaps.classifications or class_problems or undeclared):
        found += _check_flow(policy)
    return sorted(found, key=lambda problem: problem[0])
