"""Prometheus metrics over HTTP: ``GET /-/metrics``, behind the admin token like the rest of the
admin plane (scrape with ``authorization: {credentials: <admin token>}``)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from blindstore.server.admin.common import ADMIN, AUTH_ERRORS, Context, errors

router = APIRouter(tags=["metrics"], dependencies=ADMIN)


@router.get(
    "/-/metrics",
    operation_id="GetMetrics",
    name="GetMetrics",
    response_class=Response,
    responses={
        **errors(*AUTH_ERRORS),
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "The gateway's metrics in the Prometheus text exposition format.",
        },
    },
)
async def metrics(context: Context) -> Response:
    """Counters of this gateway process, e.g. ``blindstore_integrity_failures_total``."""
    body, content_type = context.gateway.metrics.exposition()
    return Response(body, media_type=content_type)
