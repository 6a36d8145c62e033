"""Policy documents for the tests, and a way to find the line a problem should be reported at."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "deploy" / "policy.demo.yaml"
DOCS = ROOT / "docs" / "policy.md"

ACTIVITIES = """\
    hds_activities:
      physical_sites: Op
      hardware: Op
      virtual_infrastructure: Op
      application_platform: Op
      administration_operation: Op
      backup: Op
"""

#: Three backends: two sovereign HDS/EEA ones and a public cloud outside the EEA, not HDS.
BACKENDS = f"""\
backends:
  home:
    kind: local
    provider: Op
    jurisdiction: EEA
    certifications: [HDS, ISO27001]
{ACTIVITIES}\
  onprem:
    kind: s3
    provider: Op
    jurisdiction: EEA
    certifications: [HDS]
{ACTIVITIES}\
  cloud:
    kind: s3
    provider: Cloud Inc
    region: us-east-1
    jurisdiction: US
    certifications: [ISO27001]
"""

IDENTIFYING_ON_HDS = """\
constraints:
  - name: identifying-on-hds
    classification: identifying
    require:
      jurisdiction: EEA
      certifications: [HDS]
"""


def document(rules: str, *, head: str = "", constraints: str = IDENTIFYING_ON_HDS) -> str:
    """A policy: version, ``head`` (extra top-level fields), the backends, ``constraints`` and
    ``rules`` (the text after ``rules:``)."""
    return f"version: 1\n{head}{BACKENDS}{constraints}rules:\n{rules}"


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def docs_example() -> str:
    """The complete example of docs/policy.md (its first yaml block)."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("```yaml\n") + len("```yaml\n")
    return text[start : text.index("```", start)]
