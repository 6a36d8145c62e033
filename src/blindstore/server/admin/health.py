"""Health and readiness: open (no token), for load balancers and orchestrators."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from blindstore.errors import ServiceUnavailable
from blindstore.server.admin.common import Context, errors

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "ready"]


@router.get("/-/health", operation_id="Health", name="Health")
async def health() -> Health:
    """The process is up."""
    return Health(status="ok")


class NotReady(ServiceUnavailable):
    code = "NotReady"
    default_message = "The catalog does not answer."
    expose_message = True


@router.get("/-/ready", operation_id="Ready", name="Ready", responses=errors(503))
async def readiness(context: Context) -> Health:
    """The catalog answers: the gateway can serve requests."""
    if not await context.ready():
        raise NotReady()
    return Health(status="ready")
