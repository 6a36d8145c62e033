"""The admin ASGI app: FastAPI, OpenAPI at ``/-/openapi.json``, interactive docs at ``/-/docs``.

Adding an area is one line in ``ROUTERS`` (and its import): each router module declares its
operations, their admin guard and their documented failures (see ``common``).
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from blindstore.errors import BlindstoreError
from blindstore.server.admin import accountability, health, metrics, policy, tenants
from blindstore.server.admin.common import AdminContext, ErrorBody, ErrorDetail

log = structlog.get_logger("blindstore.admin")

#: The areas of the admin plane, in the order the OpenAPI document lists them.
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    policy.router,
    tenants.router,
    accountability.router,
    metrics.router,
)

#: Codes for the statuses Starlette answers by itself (no route, wrong method...).
_HTTP_CODES = {
    400: "MalformedBody",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "EntityTooLarge",
    415: "UnsupportedMediaType",
}


def _error(
    status: int, code: str, message: str, details: list[ErrorDetail] | None = None
) -> JSONResponse:
    body = ErrorBody(code=code, message=message, details=details or [])
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"), headers=headers)


def create_admin_app(context: AdminContext) -> FastAPI:
    """The admin ASGI app around a running gateway."""
    app = FastAPI(
        title="blindstore admin",
        version="1",
        description=(
            "The admin plane of a blindstore gateway. Every operation but health and readiness "
            "needs the admin bearer token (`Authorization: Bearer <token>`); a tenant's S3 keys "
            "open nothing here. Every admin action is audited. Errors share one body: "
            "`{code, message, details}`."
        ),
        openapi_url="/-/openapi.json",
        docs_url="/-/docs",
        redoc_url=None,
    )
    app.state.context = context
    for router in ROUTERS:
        app.include_router(router)

    @app.exception_handler(BlindstoreError)
    async def blindstore_error(_request: Request, exc: BlindstoreError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("admin_request_failed", error=type(exc).__name__, code=exc.code)
        return _error(exc.status, exc.code, exc.public_message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            ErrorDetail(
                location=".".join(str(part) for part in error.get("loc", ())),
                reason=str(error.get("msg", "invalid")),
            )
            for error in exc.errors()
        ]
        return _error(422, "ValidationFailed", "The request does not match the schema.", details)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "InvalidRequest")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("admin_unhandled_error", error=type(exc).__name__)
        generic = BlindstoreError()
        return _error(generic.status, generic.code, generic.public_message)

    return app
