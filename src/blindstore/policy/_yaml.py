"""Reading YAML nodes with their line numbers, collecting every problem instead of stopping.

PyYAML's composer keeps each node's position (``start_mark``); the constructor that ``safe_load``
uses throws it away and silently keeps the last of two duplicate keys. So the policy is composed,
not loaded, and walked here. Every reader method records a problem and returns ``None`` when the
node is not what it should be; callers carry on, so one pass reports everything.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from blindstore.policy.units import parse_size

_NULL: Final = "tag:yaml.org,2002:null"
_INT: Final = "tag:yaml.org,2002:int"
_MERGE: Final = "tag:yaml.org,2002:merge"
#: Opaque settings are copied node by node; aliases could make that exponential.
_MAX_SETTINGS_NODES: Final = 10_000
_MAX_DEPTH: Final = 32


class Field(NamedTuple):
    """A mapping value and the line of its key."""

    line: int
    node: Node


def line_of(node: Node) -> int:
    return int(node.start_mark.line) + 1


def describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return repr(node.value)


class _TooLarge(Exception):
    pass


class Reader:
    """Walks composed YAML; ``problems`` collects ``(line, reason)``."""

    def __init__(self) -> None:
        self.problems: list[tuple[int, str]] = []

    def error(self, where: Node | int, reason: str) -> None:
        self.problems.append((where if isinstance(where, int) else line_of(where), reason))

    def compose(self, text: str) -> Node | None:
        """The document's root node, or ``None`` (with a problem) if it is not one YAML document."""
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            what = "; ".join(str(part) for part in (exc.context, exc.problem) if part) or str(exc)
            self.error(mark.line + 1 if mark else 0, f"not valid YAML: {what}")
            return None
        except yaml.YAMLError as exc:
            self.error(0, f"not valid YAML: {exc}")
            return None
        if root is None:
            self.error(1, "the policy is empty")
        return root

    def entries(self, node: Node, what: str) -> list[tuple[str, Field]] | None:
        """A mapping's ``(key, Field)`` pairs in order; duplicate and non-text keys refused."""
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping, not {describe(node)}")
            return None
        first: dict[str, int] = {}
        found: list[tuple[str, Field]] = []
        for key_node, value_node in node.value:
            line = line_of(key_node)
            if not isinstance(key_node, ScalarNode) or key_node.tag == _NULL:
                self.error(key_node, f"{what}: keys must be text, not {describe(key_node)}")
                continue
            if key_node.tag == _MERGE:
                self.error(key_node, f"{what}: merge keys (<<) are not supported")
                continue
            key = str(key_node.value)
            if key in first:
                self.error(key_node, f"{what}: duplicate key {key!r} (first at line {first[key]})")
                continue
            first[key] = line
            found.append((key, Field(line, value_node)))
        return found

    def fields(
        self,
        node: Node,
        what: str,
        *,
        required: tuple[str, ...] = (),
        optional: tuple[str, ...] = (),
    ) -> dict[str, Field] | None:
        """A mapping with known keys: unknown keys and missing required ones are problems."""
        pairs = self.entries(node, what)
        if pairs is None:
            return None
        allowed = (*required, *optional)
        found: dict[str, Field] = {}
        for key, field in pairs:
            if key in allowed:
                found[key] = field
            else:
                self.error(
                    field.line, f"{what}: unknown field {key!r} (allowed: {', '.join(allowed)})"
                )
        for key in required:
            if key not in found:
                self.error(node, f"{what}: missing {key!r}")
        return found

    def sequence(self, node: Node, what: str) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.error(node, f"{what} must be a list, not {describe(node)}")
            return None
        return list(node.value)

    def text(self, node: Node, what: str) -> str | None:
        """A non-empty scalar, as written: ``country: NO`` is the text ``NO``, not ``False``."""
        if not isinstance(node, ScalarNode) or node.tag == _NULL:
            self.error(node, f"{what} must be text, not {describe(node)}")
            return None
        value = str(node.value)
        if not value.strip():
            self.error(node, f"{what} must not be empty")
            return None
        return value

    def texts(self, node: Node, what: str) -> tuple[str, ...] | None:
        """One text, or a non-empty list of them."""
        if not isinstance(node, SequenceNode):
            one = self.text(node, what)
            return None if one is None else (one,)
        if not node.value:
            self.error(node, f"{what} must not be an empty list")
            return None
        items = [self.text(item, what) for item in node.value]
        return tuple(item for item in items if item is not None) if None not in items else None

    def integer(self, node: Node, what: str) -> int | None:
        if not isinstance(node, ScalarNode) or node.tag != _INT:
            self.error(node, f"{what} must be a whole number, not {describe(node)}")
            return None
        return int(SafeConstructor().construct_yaml_int(node))

    def size(self, node: Node, what: str) -> int | None:
        """Bytes: a whole number or text such as ``64 KiB``."""
        if not isinstance(node, ScalarNode) or node.tag == _NULL:
            self.error(node, f"{what} must be a size such as 1048576 or 64 KiB")
            return None
        if node.tag == _INT:
            return self.integer(node, what)
        try:
            return parse_size(str(node.value))
        except ValueError as exc:
            self.error(node, f"{what}: {exc}")
            return None

    def plain(self, node: Node, what: str) -> object:
        """The node as plain Python values (dicts, lists, scalars), for opaque settings."""
        budget = [_MAX_SETTINGS_NODES]
        try:
            return self._plain(node, what, budget, 0)
        except _TooLarge:
            self.error(node, f"{what} is too large or too deeply nested")
            return None

    def _plain(self, node: Node, what: str, budget: list[int], depth: int) -> object:
        budget[0] -= 1
        if budget[0] < 0 or depth > _MAX_DEPTH:
            raise _TooLarge
        if isinstance(node, MappingNode):
            pairs = self.entries(node, what) or []
            return {key: self._plain(f.node, what, budget, depth + 1) for key, f in pairs}
        if isinstance(node, SequenceNode):
            return [self._plain(item, what, budget, depth + 1) for item in node.value]
        try:
            return SafeConstructor().construct_object(node)
        except yaml.YAMLError as exc:
            self.error(node, f"{what}: {exc}")
            return None
