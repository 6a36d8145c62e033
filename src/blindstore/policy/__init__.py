"""The placement policy: where each object may be stored, and why.

Pure: no I/O except ``load_file``, which reads the one file it is given. ``parse`` turns YAML
into a validated ``Policy`` (or one ``PolicyError`` listing every problem with its line);
``decide`` places an object by the first rule that matches it, and ``explain`` says why.
The language is documented in ``docs/policy.md``.
"""

from blindstore.errors import PolicyError
from blindstore.policy.check import check
from blindstore.policy.engine import (
    CLASSIFICATION_HEADER,
    CLASSIFICATION_TAG,
    Classified,
    Verdict,
    decide,
    resolve_classification,
)
from blindstore.policy.explain import Explanation, backend_facts, explain
from blindstore.policy.load import load_file, parse
from blindstore.policy.model import (
    HDS,
    Backend,
    BucketDefaults,
    Constraint,
    HdsActivity,
    Match,
    ObjectFacts,
    Placement,
    Policy,
    Requirement,
    Rule,
    SizeRange,
)
from blindstore.policy.units import format_size, parse_size

__all__ = [
    "CLASSIFICATION_HEADER",
    "CLASSIFICATION_TAG",
    "HDS",
    "Backend",
    "BucketDefaults",
    "Classified",
    "Constraint",
    "Explanation",
    "HdsActivity",
    "Match",
    "ObjectFacts",
    "Placement",
    "Policy",
    "PolicyError",
    "Requirement",
    "Rule",
    "SizeRange",
    "Verdict",
    "backend_facts",
    "check",
    "decide",
    "explain",
    "format_size",
    "load_file",
    "parse",
    "parse_size",
    "resolve_classification",
]
