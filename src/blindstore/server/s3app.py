"""The S3 plane: a raw ASGI application.

Raw ASGI rather than a router framework because every request needs the undecoded path (SigV4
signs it), streamed bodies in both directions and S3's own error documents; a framework would add
a layer of per-request objects to the 4 KiB hot path and give none of that.

    scope → parse_scope → authenticate → route → handler → Response → send
                                     any BlindstoreError → S3 XML error (one renderer)
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog

from blindstore.config import Settings
from blindstore.errors import (
    BlindstoreError,
    InvalidBucketName,
    MethodNotAllowed,
    NotImplementedOperation,
)
from blindstore.gateway import Gateway, Principal
from blindstore.keys import justification
from blindstore.s3 import xml
from blindstore.server import handlers
from blindstore.server.body import TrackedReceive, declares_body
from blindstore.server.request import S3Request, parse_scope
from blindstore.server.responses import Response, Send, send_response
from blindstore.server.wire import Authenticator

log = structlog.get_logger("blindstore.s3")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Handler = Callable[[handlers.Context], Awaitable[Response]]

# Sub-resources we answer; any other one on a bucket or object → NotImplemented (never a
# silently wrong answer from the plain GET/PUT handler).
_BUCKET_ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "location"): handlers.get_bucket_location,
    ("GET", "uploads"): handlers.list_uploads,
    ("GET", "versioning"): handlers.get_bucket_versioning,
    ("POST", "delete"): handlers.delete_objects,
}
_OBJECT_ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "tagging"): handlers.get_object_tagging,
    ("PUT", "tagging"): handlers.put_object_tagging,
    ("DELETE", "tagging"): handlers.delete_object_tagging,
    ("POST", "uploads"): handlers.create_multipart_upload,
    ("GET", "uploadId"): handlers.list_parts,
    ("PUT", "uploadId"): handlers.upload_part,
    ("POST", "uploadId"): handlers.complete_multipart_upload,
    ("DELETE", "uploadId"): handlers.abort_multipart_upload,
}
_BUCKET_PLAIN: dict[str, Handler] = {
    "GET": handlers.list_objects,
    "PUT": handlers.create_bucket,
    "HEAD": handlers.head_bucket,
    "DELETE": handlers.delete_bucket,
}
_OBJECT_PLAIN: dict[str, Handler] = {
    "GET": handlers.get_object,
    "HEAD": handlers.head_object,
    "PUT": handlers.put_object,
    "DELETE": handlers.delete_object,
}
#: Query parameters that are options, not sub-resources.
_OPTIONS = frozenset(
    {
        "list-type",
        "prefix",
        "delimiter",
        "max-keys",
        "continuation-token",
        "start-after",
        "encoding-type",
        "fetch-owner",
        "marker",
        "partNumber",
        "versionId",
        "max-parts",
        "part-number-marker",
        "key-marker",
        "upload-id-marker",
        "max-uploads",
        "x-id",
        "response-content-type",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "X-Amz-Content-Sha256",
        "X-Amz-User-Agent",
        "mpu-object-size",
        # Signature Version 2 query authentication: refused by sigv4 with a clear message.
        "AWSAccessKeyId",
        "Signature",
        "Expires",
    }
)


def route(request: S3Request) -> Handler:
    method = "GET" if request.method == "HEAD" and request.bucket == "" else request.method
    if not request.bucket:
        if method == "GET":
            return handlers.list_buckets
        raise MethodNotAllowed(Method=request.method, ResourceType="SERVICE")
    subresources = [name for name in request.query if name not in _OPTIONS]
    routes, plain = (
        (_OBJECT_ROUTES, _OBJECT_PLAIN) if request.key else (_BUCKET_ROUTES, _BUCKET_PLAIN)
    )
    if "uploadId" in request.query:
        subresources = ["uploadId"]
    if subresources:
        handler = routes.get((method, subresources[0]))
        if handler is None:
            raise NotImplementedOperation(
                f"The {subresources[0]!r} sub-resource is not implemented by this gateway."
            )
        return handler
    handler = plain.get(method)
    if handler is None:
        raise MethodNotAllowed(
            Method=request.method, ResourceType="OBJECT" if request.key else "BUCKET"
        )
    return handler


class S3App:
    """The ASGI callable for the S3 data plane."""

    def __init__(
        self, gateway: Gateway, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        self.gateway = gateway
        self.settings = settings
        self.auth = Authenticator(gateway, clock=clock)
        self._admin_token = settings.admin.resolve_token()
        self._admin: Any = None
        # Request ids: a random per-process prefix and a counter. Unique without a syscall per
        # request (os.urandom also made every request hand the GIL to a busy worker thread).
        prefix = secrets.token_hex(4).upper()
        self._request_ids = map(f"{prefix}{{:08X}}".format, itertools.count()).__next__

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"].startswith("/-/"):
            # Our Send takes dict messages; Starlette's is typed over MutableMapping.
            await self._admin_app()(scope, receive, cast(Any, send))
            return
        request_id = self._request_ids()
        started = time.perf_counter()
        request: S3Request | None = None
        handler_name = "-"
        principal: Principal | None = None
        why_token = None
        tracked = TrackedReceive(receive)
        try:
            request = parse_scope(
                scope,
                virtual_host_domains=self.settings.s3.virtual_host_domains,
                max_header_bytes=self.settings.limits.max_header_bytes,
            )
            handler = route(request)
            handler_name = handler.__name__
            auth = await self.auth.authenticate(request)
            principal = auth.principal
            # Every Transit call made for this request, body streaming included, says why.
            why_token = justification.enter(
                justification.Justification(
                    tenant=principal.tenant.name,
                    principal=principal.access_key_id,
                    op=_operation_name(handler_name),
                    request=request_id,
                )
            )
            if request.bucket and handler is not handlers.create_bucket:
                _check_bucket_syntax(request.bucket)
            ctx = handlers.Context(
                request=request,
                principal=principal,
                auth=auth,
                gateway=self.gateway,
                settings=self.settings,
                receive=tracked,
                request_id=request_id,
            )
            response = await handler(ctx)
        except BlindstoreError as exc:
            response = self._error(exc, request, request_id)
        except Exception:
            log.exception("unhandled_error", request_id=request_id, op=handler_name)
            response = self._error(BlindstoreError(), request, request_id)
        if not tracked.complete and declares_body(scope):
            # Answered before the body was read (an early error): the rest of the body may still
            # be on its way, or never come (a client that waits for 100 Continue does not send
            # it), so the connection cannot carry another request.
            response.headers.append(("connection", "close"))
        status = response.status
        try:
            await send_response(send, response, request_id)
        except BlindstoreError as exc:
            # Failure after the status line: the body is cut short, never completed.
            status = exc.status
            log.error(
                "stream_aborted",
                request_id=request_id,
                op=handler_name,
                error=type(exc).__name__,
                reason=getattr(exc, "reason", str(exc)),
            )
            raise
        finally:
            if why_token is not None:
                justification.leave(why_token)
            log.info(
                "s3_request",
                request_id=request_id,
                op=handler_name,
                status=status,
                tenant=principal.tenant.name if principal else None,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )

    def _admin_app(self) -> Any:
        """The admin plane, built on its first request: FastAPI costs ~10 MiB resident, which
        a gateway nobody administers over HTTP should not pay."""
        if self._admin is None:
            from blindstore.server.admin import AdminContext, create_admin_app

            self._admin = create_admin_app(
                AdminContext(
                    gateway=self.gateway,
                    settings=self.settings,
                    token=self._admin_token,
                    ready=self._ready,
                    forget_access_key=self.auth.forget,
                )
            )
        return self._admin

    async def _ready(self) -> bool:
        try:
            await self.gateway.catalog.list_tenants()
        except BlindstoreError:
            return False
        return True

    def _error(self, exc: BlindstoreError, request: S3Request | None, request_id: str) -> Response:
        if exc.status >= 500:
            log.warning(
                "request_failed",
                request_id=request_id,
                error=type(exc).__name__,
                reason=getattr(exc, "reason", str(exc)),
            )
        resource = request.raw_path if request is not None else "/"
        if exc.status == 304:
            return Response(status=304)
        fields = {"Resource": resource} if exc.expose_message else {}
        if exc.expose_message:
            fields.update(exc.fields)
        body = xml.render_error(exc.code, exc.public_message, request_id=request_id, fields=fields)
        response = Response.xml(body, status=exc.status)
        if request is not None and request.method == "HEAD":
            response.head = True
        if exc.status == 503:
            response.headers.append(("retry-after", "1"))
        return response


def _operation_name(handler_name: str) -> str:
    """The S3 operation of a handler: ``get_object`` → ``GetObject``."""
    return "".join(word.capitalize() for word in handler_name.split("_"))


def _check_bucket_syntax(name: str) -> None:
    # A name that can never be a bucket is refused before it reaches the catalog.
    if len(name) > 255 or "/" in name:
        raise InvalidBucketName(BucketName=name[:64])


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
