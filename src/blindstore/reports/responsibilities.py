"""The HDS responsibility notice: who carries each of the six hosting activities, per backend.

A health-data host must publish, in its legal notice, which provider carries each activity of
the HDS certification (French Code de la santé publique, art. R.1111-9) for the data it hosts.
The facts are the placement policy's own declarations (``backends.*.hds_activities``,
``certifications``, ``jurisdiction``): this module only arranges them, and flags every activity
that no one is declared to carry, because a notice with a silent gap is worse than none.

Pure: a ``Policy`` in, a ``ResponsibilityNotice`` (a pydantic model whose JSON form is the
documented, versioned schema ``blindstore.responsibilities/1``) and its Markdown and HTML
renderings out. The clock is passed in.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from blindstore.policy.model import HDS, Backend, HdsActivity, Policy

__all__ = [
    "SCHEMA",
    "ActivityLabel",
    "BackendActivity",
    "BackendResponsibilities",
    "Carrier",
    "ResponsibilityNotice",
    "render",
    "render_html",
    "render_json",
    "render_markdown",
    "responsibility_notice",
]

#: The JSON schema id; a change of meaning or a removed field bumps the number.
SCHEMA: Final = "blindstore.responsibilities/1"
#: What a cell says when no one is declared to carry an activity.
NOBODY: Final = "NOBODY DECLARED"

Format = Literal["md", "html", "json"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ActivityLabel(_Frozen):
    """One of the six HDS activities: its stable id and its English name."""

    id: HdsActivity
    label: str


class BackendResponsibilities(_Frozen):
    """A backend in use, its facts, and who carries each activity for it."""

    name: str
    kind: str
    provider: str
    region: str | None
    country: str | None
    jurisdiction: str
    certifications: list[str]
    #: Whether the backend declares the HDS certification.
    hds_certified: bool
    description: str | None
    #: The policy rules that send objects to this backend, in policy order.
    rules: list[str]
    #: Activity id -> who carries it (None: no one is declared to); every activity is present.
    carriers: dict[HdsActivity, str | None]
    #: Activities no one is declared to carry for this backend, in the standard order.
    uncarried: list[HdsActivity]


class BackendActivity(_Frozen):
    """One activity for one backend (a gap, or a duty of a carrier)."""

    backend: str
    activity: HdsActivity


class Carrier(_Frozen):
    """One organisation and every (backend, activity) it is declared to carry."""

    name: str
    backends: list[str]
    #: Each (backend, activity) this organisation carries.
    activities: list[BackendActivity]


class ResponsibilityNotice(_Frozen):
    """The notice of one placement policy; its JSON form is ``blindstore.responsibilities/1``."""

    schema_id: Literal["blindstore.responsibilities/1"] = Field(default=SCHEMA, alias="schema")
    #: Where the policy came from (its file name).
    policy: str
    #: When the notice was generated (ISO 8601, UTC), if a clock was given.
    generated_at: str | None
    activities: list[ActivityLabel]
    #: Backends that at least one rule targets, in the policy's declaration order.
    backends: list[BackendResponsibilities]
    #: Backends the policy declares that no rule targets (no object goes there).
    unused_backends: list[str]
    #: Every organisation named as a carrier, by name.
    carriers: list[Carrier]
    #: Every (backend in use, activity) that no one carries.
    gaps: list[BackendActivity]
    #: Activities that no one carries for at least one backend in use.
    uncarried_activities: list[HdsActivity]
    #: True when every activity of every backend in use has a declared carrier.
    complete: bool

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def as_json(self) -> dict[str, object]:
        """The JSON-ready form, with ``schema`` as its first key."""
        return self.model_dump(mode="json", by_alias=True)


# ---------------------------------------------------------------------------- building


def responsibility_notice(policy: Policy, *, now: float | None = None) -> ResponsibilityNotice:
    """The notice for ``policy``; ``now`` (seconds since the epoch) dates it if given."""
    used_by: dict[str, list[str]] = {name: [] for name in policy.backends}
    for rule in policy.rules:
        for target in rule.targets:
            if rule.name not in used_by[target]:
                used_by[target].append(rule.name)
    in_use = [b for name, b in policy.backends.items() if used_by[name]]
    backends = [_backend(b, used_by[b.name]) for b in in_use]
    gaps = [BackendActivity(backend=b.name, activity=a) for b in backends for a in b.uncarried]
    carriers: dict[str, list[BackendActivity]] = {}
    for entry in backends:
        for activity, who in entry.carriers.items():
            if who is not None:
                carriers.setdefault(who, []).append(
                    BackendActivity(backend=entry.name, activity=activity)
                )
    return ResponsibilityNotice(
        policy=policy.source,
        generated_at=None
        if now is None
        else datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        activities=[ActivityLabel(id=a, label=a.label) for a in HdsActivity],
        backends=backends,
        unused_backends=[name for name, rules in used_by.items() if not rules],
        carriers=[
            Carrier(
                name=name,
                backends=list(dict.fromkeys(g.backend for g in carried)),
                activities=carried,
            )
            for name, carried in sorted(carriers.items())
        ],
        gaps=gaps,
        uncarried_activities=[a for a in HdsActivity if any(g.activity == a for g in gaps)],
        complete=not gaps,
    )


def _backend(backend: Backend, rules: list[str]) -> BackendResponsibilities:
    carriers = {a: _carrier(backend.hds_activities.get(a)) for a in HdsActivity}
    return BackendResponsibilities(
        name=backend.name,
        kind=backend.kind,
        provider=backend.provider,
        region=backend.region,
        country=backend.country,
        jurisdiction=backend.jurisdiction,
        certifications=list(backend.certifications),
        hds_certified=HDS in backend.certifications,
        description=backend.description,
        rules=rules,
        carriers=carriers,
        uncarried=[a for a, who in carriers.items() if who is None],
    )


def _carrier(declared: str | None) -> str | None:
    """A declared carrier, or None when absent or blank (blank is not a carrier)."""
    if declared is None or not declared.strip():
        return None
    return declared.strip()


# ---------------------------------------------------------------------------- rendering


def render(notice: ResponsibilityNotice, fmt: Format) -> str:
    """``notice`` as Markdown, a self-contained HTML page, or JSON."""
    if fmt == "md":
        return render_markdown(notice)
    if fmt == "html":
        return render_html(notice)
    return render_json(notice)


def render_json(notice: ResponsibilityNotice) -> str:
    import json

    return json.dumps(notice.as_json(), indent=2, ensure_ascii=False) + "\n"


def _where(entry: BackendResponsibilities) -> str:
    parts = [p for p in (entry.region, entry.country) if p]
    return " / ".join(parts) if parts else "-"


# Every ASCII punctuation character may be backslash-escaped in CommonMark; these are the ones
# that could start markup inside a table cell (emphasis, code, links and images, raw HTML,
# entities, strikethrough, a cell boundary). Parentheses need no escape once brackets have one.
_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\]<>|~&])")


def _md(text: str) -> str:
    """``text`` as one literal Markdown table cell: markup escaped, line breaks flattened."""
    flat = " ".join(text.split())
    return _MD_SPECIAL.sub(r"\\\1", flat) or "-"


def render_markdown(notice: ResponsibilityNotice) -> str:
    """The notice as Markdown: a facts table, an activities table, then gaps and notes."""
    out: list[str] = ["# HDS hosting responsibilities", ""]
    out.append(
        "Who carries each of the six activities of health-data hosting (HDS, French Code de la "
        "santé publique, art. R.1111-9) for every storage backend that holds data, as declared "
        f"by the placement policy {_md(notice.policy)}."
    )
    out.append("")
    if notice.generated_at:
        out.extend([f"Generated {notice.generated_at}.", ""])
    if not notice.backends:
        out.extend(["No backend is in use.", ""])
    else:
        out.extend(
            [
                "## Backends",
                "",
                "| Backend | Provider | Region / country | Jurisdiction | Certifications |",
                "|---|---|---|---|---|",
            ]
        )
        for b in notice.backends:
            certs = ", ".join(b.certifications) or "none"
            out.append(
                f"| {_md(b.name)} | {_md(b.provider)} | {_md(_where(b))} | "
                f"{_md(b.jurisdiction)} | {_md(certs)} |"
            )
        out.extend(["", "## Who carries each activity", ""])
        out.append("| Activity | " + " | ".join(_md(b.name) for b in notice.backends) + " |")
        out.append("|---|" + "---|" * len(notice.backends))
        for activity in notice.activities:
            cells = []
            for b in notice.backends:
                who = b.carriers[activity.id]
                cells.append(_md(who) if who is not None else f"**⚠ {NOBODY}**")
            out.append(f"| {_md(activity.label)} | " + " | ".join(cells) + " |")
        out.append("")
    out.extend(["## Gaps", ""])
    if notice.complete:
        out.append("Every activity of every backend in use has a declared carrier.")
    else:
        out.append("**⚠ No one is declared to carry:**")
        out.append("")
        for gap in notice.gaps:
            out.append(f"- {_md(_label(gap.activity))} for backend {_md(gap.backend)}")
    uncertified = [b.name for b in notice.backends if not b.hds_certified]
    if uncertified:
        out.extend(["", "Backends in use without a declared HDS certification: "])
        out[-1] += ", ".join(_md(name) for name in uncertified) + "."
    if notice.unused_backends:
        out.extend(["", "Declared by the policy but used by no rule (no data goes there): "])
        out[-1] += ", ".join(_md(name) for name in notice.unused_backends) + "."
    out.append("")
    return "\n".join(out)


def _label(activity: HdsActivity) -> str:
    return activity.label


_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #111; }
table { border-collapse: collapse; margin: 1rem 0; width: 100%; }
th, td { border: 1px solid #999; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #eee; }
td.gap, li.gap { color: #8b0000; font-weight: bold; }
td.gap { background: #fde8e8; }
p.note { color: #444; }
""".strip()


def _h(text: str | None) -> str:
    return html.escape(text if text else "-", quote=True)


def render_html(notice: ResponsibilityNotice) -> str:
    """The notice as one self-contained HTML page (inline style, no script, no external
    resource): every declared value is escaped."""
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>HDS hosting responsibilities</title>",
        f"<style>\n{_STYLE}\n</style>",
        "</head>",
        "<body>",
        "<h1>HDS hosting responsibilities</h1>",
        "<p>Who carries each of the six activities of health-data hosting (HDS, French Code de "
        "la santé publique, art. R.1111-9) for every storage backend that holds data, as "
        f"declared by the placement policy <code>{_h(notice.policy)}</code>.</p>",
    ]
    if notice.generated_at:
        out.append(f'<p class="note">Generated {_h(notice.generated_at)}.</p>')
    if not notice.backends:
        out.append("<p>No backend is in use.</p>")
    else:
        out.append("<h2>Backends</h2>")
        out.append("<table>")
        out.append(
            "<thead><tr><th>Backend</th><th>Provider</th><th>Region / country</th>"
            "<th>Jurisdiction</th><th>Certifications</th></tr></thead>"
        )
        out.append("<tbody>")
        for b in notice.backends:
            out.append(
                f"<tr><td>{_h(b.name)}</td><td>{_h(b.provider)}</td><td>{_h(_where(b))}</td>"
                f"<td>{_h(b.jurisdiction)}</td>"
                f"<td>{_h(', '.join(b.certifications) or 'none')}</td></tr>"
            )
        out.append("</tbody></table>")
        out.append("<h2>Who carries each activity</h2>")
        out.append("<table>")
        head = "".join(f'<th scope="col">{_h(b.name)}</th>' for b in notice.backends)
        out.append(f'<thead><tr><th scope="col">Activity</th>{head}</tr></thead>')
        out.append("<tbody>")
        for activity in notice.activities:
            cells = []
            for b in notice.backends:
                who = b.carriers[activity.id]
                if who is None:
                    cells.append(f'<td class="gap">⚠ {_h(NOBODY)}</td>')
                else:
                    cells.append(f"<td>{_h(who)}</td>")
            out.append(f'<tr><th scope="row">{_h(activity.label)}</th>{"".join(cells)}</tr>')
        out.append("</tbody></table>")
    out.append("<h2>Gaps</h2>")
    if notice.complete:
        out.append("<p>Every activity of every backend in use has a declared carrier.</p>")
    else:
        out.append('<p class="gap"><strong>⚠ No one is declared to carry:</strong></p>')
        out.append("<ul>")
        for gap in notice.gaps:
            out.append(
                f'<li class="gap">{_h(_label(gap.activity))} for backend {_h(gap.backend)}</li>'
            )
        out.append("</ul>")
    uncertified = [b.name for b in notice.backends if not b.hds_certified]
    if uncertified:
        out.append(
            '<p class="note">Backends in use without a declared HDS certification: '
            f"{_h(', '.join(uncertified))}.</p>"
        )
    if notice.unused_backends:
        out.append(
            '<p class="note">Declared by the policy but used by no rule (no data goes there): '
            f"{_h(', '.join(notice.unused_backends))}.</p>"
        )
    out.extend(["</body>", "</html>", ""])
    return "\n".join(out)
