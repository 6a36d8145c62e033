"""Policy YAML -> ``Policy``, refusing it with every problem at once.

``parse(text, source)`` is pure: text in, a validated ``Policy`` out, or one ``PolicyError``
listing each problem as ``source:line: reason``. ``load_file(path)`` reads a file and parses it;
it is the only function of the package that touches the outside world.

The document's shape is in ``docs/policy.md``. The loader checks shape and types (unknown
fields, duplicate keys, a list where text belongs); ``blindstore.policy.check`` then checks
meaning (references, quorums, dead rules, totality, constraints).
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Final

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from blindstore.errors import ConfigError, PolicyError
from blindstore.policy._yaml import Field, Reader, line_of
from blindstore.policy.check import Gaps, check
from blindstore.policy.model import (
    DEFAULT_CLASSIFICATION,
    DEFAULT_CLASSIFICATIONS,
    Backend,
    BucketDefaults,
    Constraint,
    HdsActivity,
    Match,
    Policy,
    Requirement,
    Rule,
    SizeRange,
)
from blindstore.provenance import REQUIRABLE

__all__ = ["load_file", "parse"]

#: The policy format this code reads.
VERSION: Final = 1
_NULL: Final = "tag:yaml.org,2002:null"
_ACTIVITIES: Final = {a.value: a for a in HdsActivity}


def load_file(path: Path) -> Policy:
    """Read and parse the policy file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read placement policy {path}: {exc}") from exc
    return parse(text, str(path))


def parse(text: str, source: str = "<policy>") -> Policy:
    """The policy in ``text``; raise ``PolicyError`` with every problem found."""
    reader = Reader()
    root = reader.compose(text)
    problems = reader.problems
    if root is not None:
        built = _Builder(reader).policy(root, source)
        if built is not None:
            policy, gaps = built
            problems = [*reader.problems, *check(policy, gaps)]
            if not problems:
                return policy
    raise PolicyError(source, sorted(problems, key=lambda problem: problem[0]))


def _peek(node: Node, key: str) -> str | None:
    """The text under ``key`` of a mapping node, if it has one, unchecked."""
    if isinstance(node, MappingNode):
        for key_node, value in node.value:
            if key_node.value == key and isinstance(value, ScalarNode) and value.value:
                return str(value.value)
    return None


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


class _Builder:
    def __init__(self, reader: Reader) -> None:
        self.r = reader
        self.broken_backends: set[str] = set()
        self.broken_rules = False
        self.broken_classifications = False

    def _clean_since(self, mark: int) -> bool:
        return len(self.r.problems) == mark

    # -------------------------------------------------------------------- the document

    def policy(self, root: Node, source: str) -> tuple[Policy, Gaps] | None:
        top = self.r.fields(
            root,
            "the policy",
            required=("version", "backends", "rules"),
            optional=("classifications", "default_classification", "buckets", "constraints"),
        )
        if top is None:
            return None
        if "version" in top:
            version = self.r.integer(top["version"].node, "version")
            if version is not None and version != VERSION:
                self.r.error(top["version"].node, f"version must be {VERSION}, not {version}")
        classifications: tuple[str, ...] = DEFAULT_CLASSIFICATIONS
        if "classifications" in top:
            read = self.r.texts(top["classifications"].node, "classifications")
            self.broken_classifications = read is None
            classifications = read or classifications
        default = DEFAULT_CLASSIFICATION
        if "default_classification" in top:
            read_default = self.r.text(top["default_classification"].node, "default_classification")
            self.broken_classifications |= read_default is None
            default = read_default or default
        backends = self._backends(top["backends"]) if "backends" in top else {}
        buckets = self._buckets(top["buckets"]) if "buckets" in top else {}
        constraints = self._constraints(top["constraints"]) if "constraints" in top else ()
        rules = self._rules(top["rules"]) if "rules" in top else ()
        policy = Policy(
            backends=MappingProxyType(backends),
            rules=rules,
            classifications=classifications,
            default_classification=default,
            buckets=MappingProxyType(buckets),
            constraints=constraints,
            version=VERSION,
            source=source,
            lines=MappingProxyType({key: field.line for key, field in top.items()}),
        )
        gaps = Gaps(
            backends=frozenset(self.broken_backends),
            rules=self.broken_rules or "rules" not in top,
            classifications=self.broken_classifications,
        )
        return policy, gaps

    # -------------------------------------------------------------------- backends

    def _backends(self, field: Field) -> dict[str, Backend]:
        pairs = self.r.entries(field.node, "backends")
        if pairs is None:
            return {}
        if not pairs:
            self.r.error(field.line, "backends must declare at least one backend")
        found: dict[str, Backend] = {}
        for name, entry in pairs:
            backend = self._backend(name, entry)
            if backend is None:
                self.broken_backends.add(name)
            else:
                found[name] = backend
        return found

    def _backend(self, name: str, entry: Field) -> Backend | None:
        what = f"backend {name!r}"
        mark = len(self.r.problems)
        f = self.r.fields(
            entry.node,
            what,
            required=("kind", "provider", "jurisdiction"),
            optional=(
                "region",
                "country",
                "certifications",
                "hds_activities",
                "description",
                "settings",
            ),
        )
        if f is None:
            return None
        texts = {
            key: self.r.text(f[key].node, f"{what}: {key}")
            for key in ("kind", "provider", "jurisdiction", "region", "country", "description")
            if key in f
        }
        certifications = (
            self.r.texts(f["certifications"].node, f"{what}: certifications")
            if "certifications" in f
            else ()
        )
        activities = (
            self._activities(what, f["hds_activities"].node) if "hds_activities" in f else {}
        )
        settings: object = {}
        if "settings" in f:
            before = len(self.r.problems)
            settings = self.r.plain(f["settings"].node, f"{what}: settings")
            if not isinstance(settings, dict) and self._clean_since(before):
                self.r.error(f["settings"].node, f"{what}: settings must be a mapping")
        kind, provider, jurisdiction = (texts.get(k) for k in ("kind", "provider", "jurisdiction"))
        if not (
            self._clean_since(mark)
            and kind
            and provider
            and jurisdiction
            and certifications is not None
            and isinstance(settings, dict)
        ):
            return None
        return Backend(
            name=name,
            kind=kind,
            provider=provider,
            jurisdiction=jurisdiction,
            region=texts.get("region"),
            country=texts.get("country"),
            certifications=certifications,
            hds_activities=MappingProxyType(activities),
            description=texts.get("description"),
            settings=MappingProxyType(settings),
            line=entry.line,
            lines=MappingProxyType({key: value.line for key, value in f.items()}),
        )

    def _activities(self, what: str, node: Node) -> dict[HdsActivity, str]:
        found: dict[HdsActivity, str] = {}
        for key, entry in self.r.entries(node, f"{what}: hds_activities") or []:
            activity = _ACTIVITIES.get(key)
            if activity is None:
                self.r.error(
                    entry.line,
                    f"{what}: unknown HDS activity {key!r} (one of {', '.join(_ACTIVITIES)})",
                )
                continue
            who = self.r.text(entry.node, f"{what}: hds_activities.{key}")
            if who is not None:
                found[activity] = who
        return found

    # -------------------------------------------------------------------- buckets

    def _buckets(self, field: Field) -> dict[str, BucketDefaults]:
        found: dict[str, BucketDefaults] = {}
        for bucket, entry in self.r.entries(field.node, "buckets") or []:
            f = self.r.fields(entry.node, f"bucket {bucket!r}", required=("classification",))
            if f is None or "classification" not in f:
                continue
            value = self.r.text(f["classification"].node, f"bucket {bucket!r}: classification")
            if value is not None:
                found[bucket] = BucketDefaults(bucket, value, line=f["classification"].line)
        return found

    # -------------------------------------------------------------------- constraints

    def _constraints(self, field: Field) -> tuple[Constraint, ...]:
        found: list[Constraint] = []
        for index, node in enumerate(self.r.sequence(field.node, "constraints") or []):
            constraint = self._constraint(index + 1, node)
            if constraint is not None:
                found.append(constraint)
        return tuple(found)

    def _constraint(self, number: int, node: Node) -> Constraint | None:
        what = f"constraint #{number}"
        mark = len(self.r.problems)
        f = self.r.fields(
            node, what, required=("classification", "require"), optional=("name", "description")
        )
        if f is None:
            return None
        name = self.r.text(f["name"].node, f"{what}: name") if "name" in f else None
        if "description" in f:
            self.r.text(f["description"].node, f"{what}: description")
        classes = (
            self.r.texts(f["classification"].node, f"{what}: classification")
            if "classification" in f
            else None
        )
        require = self._requirement(what, f["require"].node) if "require" in f else None
        if not self._clean_since(mark) or classes is None or require is None:
            return None
        return Constraint(
            classifications=classes,
            require=require,
            name=name,
            line=line_of(node),
            lines=MappingProxyType({key: value.line for key, value in f.items()}),
        )

    def _requirement(self, what: str, node: Node) -> Requirement | None:
        f = self.r.fields(node, f"{what}: require", optional=("jurisdiction", "certifications"))
        if f is None:
            return None
        jurisdictions = (
            self.r.texts(f["jurisdiction"].node, f"{what}: require.jurisdiction")
            if "jurisdiction" in f
            else None
        )
        certifications = (
            self.r.texts(f["certifications"].node, f"{what}: require.certifications")
            if "certifications" in f
            else ()
        )
        return Requirement(jurisdictions=jurisdictions, certifications=certifications or ())

    # -------------------------------------------------------------------- rules

    def _rules(self, field: Field) -> tuple[Rule, ...]:
        nodes = self.r.sequence(field.node, "rules")
        if nodes is None:
            self.broken_rules = True
            return ()
        found: list[Rule] = []
        for index, node in enumerate(nodes):
            rule = self._rule(index + 1, node)
            if rule is None:
                self.broken_rules = True
            else:
                found.append(rule)
        return tuple(found)

    def _rule(self, number: int, node: Node) -> Rule | None:
        mark = len(self.r.problems)
        # Problems are easier to find under the rule's name than under its position.
        named = _peek(node, "name")
        what = f"rule {named!r}" if named else f"rule #{number}"
        f = self.r.fields(
            node,
            what,
            required=("name", "targets"),
            optional=("description", "match", "write_quorum", "require"),
        )
        if f is None:
            return None
        name = self.r.text(f["name"].node, f"{what}: name") if "name" in f else None
        description = (
            self.r.text(f["description"].node, f"{what}: description")
            if "description" in f
            else None
        )
        lines = {key: value.line for key, value in f.items()}
        match = Match()
        if "match" in f and not _is_null(f["match"].node):
            match = self._match(what, f["match"].node, lines) or match
        targets = self.r.texts(f["targets"].node, f"{what}: targets") if "targets" in f else None
        quorum = (
            self.r.integer(f["write_quorum"].node, f"{what}: write_quorum")
            if "write_quorum" in f
            else None
        )
        require = self._require(what, f["require"].node) if "require" in f else ()
        if not self._clean_since(mark) or name is None or targets is None:
            return None
        return Rule(
            name=name,
            match=match,
            targets=targets,
            write_quorum=len(targets) if quorum is None else quorum,
            description=description,
            require=require,
            line=line_of(node),
            lines=MappingProxyType(lines),
        )

    def _require(self, what: str, node: Node) -> tuple[str, ...]:
        """The provenance fields a rule requires: known names (``REQUIRABLE``), each once."""
        items = list(node.value) if isinstance(node, SequenceNode) else [node]
        found: list[str] = []
        for item in items:
            name = self.r.text(item, f"{what}: require")
            if name is None:
                continue
            if name not in REQUIRABLE:
                self.r.error(
                    item,
                    f"{what}: require: unknown provenance field {name!r} "
                    f"(one of {', '.join(REQUIRABLE)})",
                )
            elif name in found:
                self.r.error(item, f"{what}: require: {name!r} is listed twice")
            else:
                found.append(name)
        return tuple(found)

    def _match(self, what: str, node: Node, lines: dict[str, int]) -> Match | None:
        f = self.r.fields(
            node,
            f"{what}: match",
            optional=(
                "tenant",
                "bucket",
                "key_prefix",
                "key_glob",
                "tags",
                "classification",
                "size",
                "content_type",
            ),
        )
        if f is None:
            return None
        lines.update({f"match.{key}": value.line for key, value in f.items()})

        def texts(key: str) -> tuple[str, ...] | None:
            return self.r.texts(f[key].node, f"{what}: {key}") if key in f else None

        content_types = texts("content_type")
        return Match(
            tenants=texts("tenant"),
            buckets=texts("bucket"),
            key_prefixes=texts("key_prefix"),
            key_globs=texts("key_glob"),
            tags=MappingProxyType(self._tags(what, f["tags"].node) if "tags" in f else {}),
            classifications=texts("classification"),
            size=self._size(what, f["size"].node) if "size" in f else None,
            content_types=None
            if content_types is None
            else tuple(c.strip().lower() for c in content_types),
        )

    def _tags(self, what: str, node: Node) -> dict[str, tuple[str, ...]]:
        found: dict[str, tuple[str, ...]] = {}
        for tag, entry in self.r.entries(node, f"{what}: tags") or []:
            values = self.r.texts(entry.node, f"{what}: tags.{tag}")
            if values is not None:
                found[tag] = values
        return found

    def _size(self, what: str, node: Node) -> SizeRange | None:
        f = self.r.fields(node, f"{what}: size", optional=("at_least", "below"))
        if f is None:
            return None
        bounds = {key: self.r.size(value.node, f"{what}: size.{key}") for key, value in f.items()}
        return SizeRange(at_least=bounds.get("at_least"), below=bounds.get("below"))
