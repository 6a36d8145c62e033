"""What every admin router shares: the context, the admin credential check, the error body.

Each area of the admin plane (health, policy, tenants...) is one module with one ``APIRouter``;
``app.py`` includes them. A router reaches the running gateway through ``AdminContext`` (a
dependency, so a test can build the app around any gateway), guards its operations with
``ADMIN`` and documents its failures with ``errors(...)`` so that the OpenAPI schema lists every
status an operation can answer, each with the one ``ErrorBody`` shape.

Every operation has a stable ``operation_id`` (CamelCase, like S3's operation names): the audit
trail records admin actions as ``admin.<operation_id>``, read from the matched route.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from blindstore.config import Settings
from blindstore.errors import AccessDenied, ClientError
from blindstore.gateway import Gateway


@dataclass(frozen=True, slots=True)
class AdminContext:
    """The running gateway as the admin plane sees it."""

    gateway: Gateway
    settings: Settings
    #: The admin bearer token; None disables every operation but health and readiness.
    token: str | None
    #: The dependencies that do not answer, each with a short reason; empty when ready.
    ready: Callable[[], Awaitable[dict[str, str]]]
    #: Drop an access key from the S3 plane's credential cache (revocation takes effect on this
    #: node at once; other nodes drop it within ``wire.CREDENTIAL_CACHE_SECONDS``).
    forget_access_key: Callable[[str], None] = lambda _akid: None


def admin_context(request: Request) -> AdminContext:
    context: AdminContext = request.app.state.context
    return context


Context = Annotated[AdminContext, Depends(admin_context)]


# -- errors ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """One reason a request was refused (a field of the body, a query parameter...)."""

    location: str = Field(description="Where: `body.name`, `query.limit`...")
    reason: str


class ErrorBody(BaseModel):
    """Every admin error, whatever its status."""

    code: str = Field(description="Stable machine-readable code, e.g. `NoSuchTenant`.")
    message: str = Field(description="Human-readable; never contains secrets.")
    details: list[ErrorDetail] = Field(default_factory=list)


_DESCRIPTIONS = {
    400: "The request is wrong, or its body cannot be decoded (see `message`)",
    401: "No admin credential, or a wrong one (a tenant's S3 keys are never admin credentials)",
    403: "The admin plane is disabled (no admin token is configured)",
    404: "No such resource",
    409: "Conflicts with the current state (see `code`)",
    422: "The request does not match the schema (see `details`)",
    502: "OpenBao refused the operation",
    503: "A dependency (catalog, OpenBao) is unreachable",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the failures an operation can answer, all as ``ErrorBody``."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}


#: Failures any authenticated operation can answer.
AUTH_ERRORS = (401, 403, 422, 503)
#: ... and those that take a body (400: a body that cannot even be decoded).
BODY_ERRORS = (400, *AUTH_ERRORS)


class AdminTokenRequired(ClientError):
    code = "AdminTokenRequired"
    status = 401
    default_message = "An admin token is required (Authorization: Bearer <admin token>)."


class AdminPlaneDisabled(AccessDenied):
    code = "AdminPlaneDisabled"
    default_message = "The admin plane is disabled: no admin token is configured."


class NotFound(ClientError):
    code = "NotFound"
    status = 404
    default_message = "No such resource."


class Conflict(ClientError):
    code = "Conflict"
    status = 409
    default_message = "The request conflicts with the current state."


def is_admin(request: Request, context: Context) -> bool:
    """Whether the request carries the admin bearer token (for answers that say more to it)."""
    if context.token is None:
        return False
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), context.token.encode()
    )


def require_admin(request: Request, context: Context) -> None:
    """The admin bearer token, compared in constant time; anything else is refused."""
    if context.token is None:
        raise AdminPlaneDisabled()
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        if scheme.upper().startswith("AWS4-"):
            # An S3 client pointed at /-/: say why its (valid or not) signature opens nothing.
            raise AdminTokenRequired(
                "S3 credentials are not admin credentials: use the admin bearer token."
            )
        raise AdminTokenRequired()
    if not hmac.compare_digest(value.strip().encode(), context.token.encode()):
        raise AdminTokenRequired("The admin token is not valid.")


#: Dependencies of every operation that needs the admin credential.
ADMIN = [Depends(require_admin)]


class RequestModel(BaseModel):
    """A request body: unknown fields are refused, so a typo is an error, not a silent no-op;
    types are strict (``true`` is not a size, ``1`` is not a name), as the schema says."""

    model_config = ConfigDict(extra="forbid", strict=True)


# -- pages -----------------------------------------------------------------------------------

Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many items.")]
After = Annotated[
    str,
    Query(max_length=1024, description="Start strictly after this marker (a page's `next`)."),
]
