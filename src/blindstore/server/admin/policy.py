"""The placement policy: validate a document, explain a placement, reload the policy file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, BeforeValidator, Field, NonNegativeInt

from blindstore.errors import PolicyError
from blindstore.policy import ObjectFacts, Policy, explain, parse
from blindstore.server.admin.common import (
    ADMIN,
    AUTH_ERRORS,
    BODY_ERRORS,
    Conflict,
    Context,
    RequestModel,
    errors,
)

router = APIRouter(tags=["policy"], dependencies=ADMIN)

#: A policy document is small; anything larger is a mistake, not a policy.
MAX_POLICY_BYTES = 1 << 20


class NoPolicy(Conflict):
    code = "NoPolicy"
    default_message = "No placement policy is configured (placement.policy)."


def _running(context: Context) -> Policy:
    current = context.gateway.current_policy()
    if current is None:
        raise NoPolicy()
    return current


class Problem(BaseModel):
    line: int
    reason: str


class ValidationReport(BaseModel):
    valid: bool
    problems: list[Problem] = Field(default_factory=list)
    backends: int = 0
    rules: int = 0


@router.post(
    "/-/policy/validate",
    operation_id="ValidatePolicy",
    name="ValidatePolicy",
    responses=errors(*BODY_ERRORS),
)
async def validate_policy(
    text: Annotated[str, Body(media_type="application/yaml", max_length=MAX_POLICY_BYTES)],
) -> ValidationReport:
    """Check a placement policy document (YAML) without applying it: every problem, with its
    line."""
    try:
        checked = parse(text, "<request>")
    except PolicyError as exc:
        return ValidationReport(
            valid=False, problems=[Problem(line=ln, reason=r) for ln, r in exc.problems]
        )
    return ValidationReport(valid=True, backends=len(checked.backends), rules=len(checked.rules))


def _integral(value: object) -> object:
    """JSON has one number type: ``1024.0`` is the integer 1024 (as JSON Schema says), while
    ``true`` and ``"1024"`` stay refused (strict models)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class ExplainRequest(RequestModel):
    """The facts of an object to place (as `blindstore policy explain` takes them)."""

    tenant: str
    bucket: str
    key: str
    tags: dict[str, str] = Field(default_factory=dict)
    classification: str | None = Field(
        default=None, description="The `x-amz-meta-classification` header, if any."
    )
    size: Annotated[NonNegativeInt, BeforeValidator(_integral)] | None = None
    content_type: str | None = None


class ExplainedObject(BaseModel):
    tenant: str
    bucket: str
    key: str
    tags: dict[str, str]
    classification_header: str | None
    size: int | None
    content_type: str | None


class ClassificationOut(BaseModel):
    value: str
    source: str = Field(description="Where the classification came from (header, tag, bucket…)")
    unknown_value: str | None = Field(
        description="A value the policy does not declare (then `value` is the most sensitive)."
    )


class RuleOut(BaseModel):
    name: str
    line: int
    description: str | None
    reasons: list[str]


class SkippedRule(BaseModel):
    rule: str
    line: int
    reason: str


class BackendFacts(BaseModel):
    """A backend's declared, auditable facts (never its settings, which may name secrets)."""

    name: str
    kind: str
    provider: str
    region: str | None
    country: str | None
    jurisdiction: str
    certifications: list[str]
    hds_activities: dict[str, str | None] = Field(
        description="Who carries each of the six HDS activities; null when undeclared."
    )
    description: str | None


class Explanation(BaseModel):
    object: ExplainedObject
    classification: ClassificationOut
    rule: RuleOut
    skipped: list[SkippedRule]
    targets: list[BackendFacts]
    write_quorum: int


@router.post(
    "/-/policy/explain",
    operation_id="ExplainPlacement",
    name="ExplainPlacement",
    responses=errors(*BODY_ERRORS, 409),
)
async def explain_placement(facts: ExplainRequest, context: Context) -> Explanation:
    """Which rule places this object under the running policy, why, and on which backends."""
    found = explain(_running(context), ObjectFacts(**facts.model_dump()))
    return Explanation.model_validate(found.as_dict())


class ReloadReport(BaseModel):
    reloaded: bool = Field(
        description="False when the file is invalid: the running policy stays (see the logs)."
    )


@router.post(
    "/-/policy/reload",
    operation_id="ReloadPolicy",
    name="ReloadPolicy",
    responses=errors(*AUTH_ERRORS, 409),
)
async def reload_policy(context: Context) -> ReloadReport:
    """Read the policy file again; an invalid file keeps the running policy (see the logs)."""
    reload = context.gateway.reload_placement
    if reload is None:
        raise NoPolicy()
    return ReloadReport(reloaded=reload())
