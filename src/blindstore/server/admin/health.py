"""Health and readiness: open (no token), for load balancers and orchestrators.

Readiness says which dependency is down only to the admin token: to anyone else it is a status,
not a map of the sovereign infrastructure.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from blindstore.server.admin.common import Context, ErrorBody, ErrorDetail, errors, is_admin

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "ready"]


@router.get("/-/health", operation_id="Health", name="Health")
async def health() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/-/ready", operation_id="Ready", name="Ready", response_model=Health, responses=errors(503)
)
async def readiness(request: Request, context: Context) -> Health | JSONResponse:
    """The catalog and OpenBao answer: the gateway can serve requests.

    503 ``NotReady`` otherwise; with the admin bearer token the answer names each dependency
    that is down (``details``), without it only the status.
    """
    failures = await context.ready()
    if not failures:
        return Health(status="ready")
    body = ErrorBody(code="NotReady", message="A dependency of the gateway does not answer.")
    if is_admin(request, context):
        body.details = [
            ErrorDetail(location=name, reason=reason) for name, reason in sorted(failures.items())
        ]
    return JSONResponse(
        status_code=503, content=body.model_dump(mode="json"), headers={"Retry-After": "1"}
    )
