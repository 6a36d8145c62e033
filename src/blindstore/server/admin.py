"""The admin plane: JSON over HTTP under ``/-/`` on the gateway's port (FastAPI, OpenAPI).

``/-/`` can never be an S3 path (bucket names have at least three characters), so the S3 plane
hands these requests over untouched. Authentication is a separate admin bearer token
(``admin.token``/``admin.token_file``): a tenant's S3 keys open nothing here. Health and
readiness are open, for load balancers and orchestrators.

This is the seed of the admin API of issue 5; today it serves the placement policy: validate,
explain, reload.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from blindstore.errors import BlindstoreError, PolicyError
from blindstore.policy import ObjectFacts, Policy, explain, parse

PolicyGetter = Callable[[], Policy | None]


class ExplainRequest(BaseModel):
    """The facts of an object to place (as `blindstore policy explain` takes them)."""

    tenant: str
    bucket: str
    key: str
    tags: dict[str, str] = Field(default_factory=dict)
    classification: str | None = None
    size: int | None = Field(default=None, ge=0)
    content_type: str | None = None


class Problem(BaseModel):
    line: int
    reason: str


class ValidationReport(BaseModel):
    valid: bool
    problems: list[Problem] = Field(default_factory=list)
    backends: int = 0
    rules: int = 0


class ReloadReport(BaseModel):
    reloaded: bool


class Health(BaseModel):
    status: str


def create_admin_app(
    *,
    token: str | None,
    policy: PolicyGetter,
    reload: Callable[[], bool] | None,
    ready: Callable[[], Awaitable[bool]],
) -> FastAPI:
    """The admin ASGI app. With ``token`` None only health and readiness answer."""
    app = FastAPI(
        title="blindstore admin",
        version="1",
        openapi_url="/-/openapi.json",
        docs_url="/-/docs",
        redoc_url=None,
    )

    def authorised(request: Request) -> None:
        supplied = request.headers.get("authorization", "")
        scheme, _, value = supplied.partition(" ")
        if (
            token is None
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(value.encode(), token.encode())
        ):
            raise HTTPException(
                status_code=401,
                detail="admin token required (Authorization: Bearer <admin token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    admin = [Depends(authorised)]

    @app.get("/-/health")
    async def health() -> Health:
        """The process is up."""
        return Health(status="ok")

    @app.get("/-/ready", responses={503: {"description": "a dependency is unreachable"}})
    async def readiness() -> Health:
        """The catalog answers: the gateway can serve requests."""
        if not await ready():
            raise HTTPException(status_code=503, detail="not ready")
        return Health(status="ready")

    @app.post("/-/policy/validate", dependencies=admin)
    async def validate_policy(
        text: Annotated[str, Body(media_type="application/yaml")],
    ) -> ValidationReport:
        """Check a placement policy document (YAML) without applying it."""
        try:
            checked = parse(text, "<request>")
        except PolicyError as exc:
            return ValidationReport(
                valid=False, problems=[Problem(line=ln, reason=r) for ln, r in exc.problems]
            )
        return ValidationReport(
            valid=True, backends=len(checked.backends), rules=len(checked.rules)
        )

    @app.post(
        "/-/policy/explain",
        dependencies=admin,
        responses={409: {"description": "no placement policy is configured"}},
    )
    async def explain_placement(facts: ExplainRequest) -> dict[str, Any]:
        """Which rule places this object under the running policy, why, and on which backends."""
        current = policy()
        if current is None:
            raise HTTPException(status_code=409, detail="no placement policy is configured")
        return explain(current, ObjectFacts(**facts.model_dump())).as_dict()

    @app.post(
        "/-/policy/reload",
        dependencies=admin,
        responses={409: {"description": "no placement policy is configured"}},
    )
    async def reload_policy() -> ReloadReport:
        """Read the policy file again; an invalid file keeps the running policy (see the logs)."""
        if reload is None:
            raise HTTPException(status_code=409, detail="no placement policy is configured")
        return ReloadReport(reloaded=reload())

    @app.exception_handler(BlindstoreError)
    async def internal(_request: Request, exc: BlindstoreError) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse(status_code=exc.status, content={"detail": exc.public_message})

    return app
