"""The S3 plane: a raw ASGI application.

Raw ASGI rather than a router framework because every request needs the undecoded path (SigV4
signs it), streamed bodies in both directions and S3's own error documents; a framework would add
a layer of per-request objects to the 4 KiB hot path and give none of that.

    scope → parse_scope → authenticate → route → handler → Response → send
                                     any BlindstoreError → S3 XML error (one renderer)
"""

from __future__ import annotations

import hmac
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, cast

import structlog

from blindstore.audit import facts as audit_facts
from blindstore.audit.bounded import MAX_BUCKET_BYTES, MAX_KEY_BYTES, MAX_QUERY_BYTES, bounded
from blindstore.audit.events import AuditEvent
from blindstore.config import Settings
from blindstore.errors import (
    BlindstoreError,
    InvalidBucketName,
    MethodNotAllowed,
    NotImplementedOperation,
    ServiceUnavailable,
)
from blindstore.gateway import Gateway, Principal
from blindstore.keys import justification
from blindstore.readiness import Readiness
from blindstore.s3 import xml
from blindstore.server import handlers
from blindstore.server.body import ClientDisconnected, TrackedReceive, declares_body
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
    if handler is handlers.put_object and "x-amz-copy-source" in request.headers:
        return handlers.copy_object  # CopyObject: a PUT that names its source
    return handler


class S3App:
    """The ASGI callable for the S3 data plane."""

    def __init__(
        self, gateway: Gateway, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        self.gateway = gateway
        self.settings = settings
        self.auth = Authenticator(
            gateway, clock=clock, region=settings.s3.region, key_prefix=settings.vault.key_prefix
        )
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
            await self._admin_request(scope, receive, send)
            return
        with audit_facts.collecting() as facts:
            await self._s3_request(scope, receive, send, facts)

    async def _s3_request(
        self, scope: dict[str, Any], receive: Receive, send: Send, facts: audit_facts.AuditFacts
    ) -> None:
        request_id = self._request_ids()
        started = time.perf_counter()
        request: S3Request | None = None
        handler_name = "-"
        principal: Principal | None = None
        why_token = None
        failure: BlindstoreError | None = None
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
            if self.gateway.audit is not None:
                # A write that creates an object commits this record with its row.
                facts.success_event = partial(
                    self._audit_event,
                    scope,
                    request,
                    principal,
                    handler_name,
                    request_id,
                    _SUCCESS,
                    None,
                    tracked,
                    facts,
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
            failure = exc
            response = self._error(exc, request, request_id)
        except Exception:
            log.exception("unhandled_error", request_id=request_id, op=handler_name)
            failure = BlindstoreError()
            response = self._error(failure, request, request_id)
        event = self._audit_event(
            scope, request, principal, handler_name, request_id, response, failure, tracked, facts
        )
        already_recorded = facts.recorded and failure is None and response.status < 300
        if self.gateway.audit is not None and not already_recorded:
            # Part of the request: nothing is sent (no status line, no data) until the record is
            # committed; if it cannot be, the client gets 503 instead of the response.
            try:
                await self.gateway.audit.append(event)
            except BlindstoreError as exc:
                if response.stream is not None:
                    await _close(response.stream)
                response = self._error(
                    exc if isinstance(exc, ServiceUnavailable) else ServiceUnavailable(),
                    request,
                    request_id,
                )
        if not tracked.complete and declares_body(scope):
            # Answered before the body was read (an early error): the rest of the body may still
            # be on its way, or never come (a client that waits for 100 Continue does not send
            # it), so the connection cannot carry another request.
            response.headers.append(("connection", "close"))
        status = response.status
        try:
            await send_response(send, response, request_id)
        except ClientDisconnected:
            # The client hung up (or stopped reading and was cut): its business, not a fault.
            status = 499
            log.info("client_disconnected", request_id=request_id, op=handler_name)
            if response.stream is not None:
                await self._audit_abort(event, f"{response.status} (client disconnected)")
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
            await self._audit_abort(event, f"{exc.status} {exc.code} (body cut short)")
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

    def _audit_event(
        self,
        scope: dict[str, Any],
        request: S3Request | None,
        principal: Principal | None,
        handler_name: str,
        request_id: str,
        response: Response,
        failure: BlindstoreError | None,
        tracked: TrackedReceive,
        facts: audit_facts.AuditFacts,
    ) -> AuditEvent:
        code = failure.code if failure is not None else None
        sent = 0
        if not response.head and response.status not in (204, 304):
            sent = _content_length(response)
        detail: dict[str, str | int | float | bool | None] = {"method": scope["method"]}
        if request is not None and request.query:
            # Sub-resource and option names only: values may name objects (prefix, markers).
            detail["query"] = bounded(",".join(sorted(request.query)), MAX_QUERY_BYTES)
        # The row MAC a write committed, the object ids a delete removed (audit.rollback).
        detail.update(facts.detail)
        return AuditEvent(
            time=self.auth.clock(),
            request_id=request_id,
            principal=principal.access_key_id if principal is not None else "",
            operation=_operation_name(handler_name) if handler_name != "-" else "Unrouted",
            result=f"{response.status} {code}" if code else str(response.status),
            tenant_id=principal.tenant.tenant_id if principal is not None else None,
            # As addressed, but bounded: these come from the client before any check.
            bucket=bounded(request.bucket or None, MAX_BUCKET_BYTES) if request else None,
            key=bounded(request.key or None, MAX_KEY_BYTES) if request is not None else None,
            object_id=facts.object_id,
            version=facts.version,
            backends=facts.backends,
            key_name=facts.key_name,
            key_version=facts.key_version,
            bytes=tracked.received + sent,
            source=_source(scope),
            detail=detail,
        )

    async def _audit_abort(self, event: AuditEvent, result: str) -> None:
        """The response was cut short after its record was committed: say so (best effort)."""
        if self.gateway.audit is None:
            return
        aborted = AuditEvent(
            time=self.auth.clock(),
            request_id=event.request_id,
            principal=event.principal,
            operation=event.operation,
            result=result,
            tenant_id=event.tenant_id,
            bucket=event.bucket,
            key=event.key,
            object_id=event.object_id,
            version=event.version,
            backends=event.backends,
            key_name=event.key_name,
            key_version=event.key_version,
            source=event.source,
            detail=event.detail,
        )
        try:
            await self.gateway.audit.append(aborted)
        except BlindstoreError:
            log.error("audit.abort_not_recorded", request_id=event.request_id)

    async def _admin_request(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """The admin plane, audited: its status line waits for the record, like S3's."""
        app = self._admin_app()
        audit = self.gateway.audit
        if audit is None or scope["path"] in _UNAUDITED:
            # Our Send takes dict messages; Starlette's is typed over MutableMapping.
            await _quietly_if_gone(app(scope, receive, cast(Any, send)))
            return
        request_id = self._request_ids()
        received = 0
        refused = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def audited_send(message: dict[str, Any]) -> None:
            nonlocal refused
            if refused:
                return  # the app's response was replaced by a 503
            if message["type"] == "http.response.start":
                status = int(message["status"])
                event = AuditEvent(
                    time=self.auth.clock(),
                    request_id=request_id,
                    principal="admin" if self._admin_authorised(scope) else "",
                    operation=_admin_operation(scope),
                    result=str(status),
                    bytes=received,
                    source=_source(scope),
                )
                try:
                    await audit.append(event)
                except BlindstoreError:
                    refused = True
                    body = (
                        b'{"code":"ServiceUnavailable","message":"The audit record could not be'
                        b' written: the action is refused.","details":[]}'
                    )
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 503,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"retry-after", b"1"),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode()),
                    ],
                }
            await send(message)

        await _quietly_if_gone(app(scope, counted_receive, cast(Any, audited_send)))

    def _admin_authorised(self, scope: dict[str, Any]) -> bool:
        token = self._admin_token
        if token is None:
            return False
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                scheme, _, supplied = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(supplied, token.encode())
        return False

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
                    ready=Readiness(self.gateway.dependency_probes).failures,
                    forget_access_key=self.auth.forget,
                )
            )
        return self._admin

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


async def _quietly_if_gone(call: Awaitable[None]) -> None:
    """Run the admin app; a client that hangs up mid-answer is logged, not a traceback."""
    try:
        await call
    except ClientDisconnected:
        log.info("client_disconnected", op="admin")


def _operation_name(handler_name: str) -> str:
    """The S3 operation of a handler: ``get_object`` → ``GetObject``."""
    return "".join(word.capitalize() for word in handler_name.split("_"))


#: Readiness is polled every few seconds by load balancers: it acts on nothing and reads no data;
#: recording it would cost a catalog write per probe, and a catalog that is down would turn its
#: answer into the audit refusal instead of saying what is down.
_UNAUDITED = frozenset({"/-/ready"})

#: The response a write's record is built with when it commits together with its row.
_SUCCESS = Response(status=200)


def _content_length(response: Response) -> int:
    for name, value in response.headers:
        if name == "content-length":
            return int(value) if value.isdigit() else 0
    return len(response.body) if response.stream is None else 0


def _source(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def _admin_operation(scope: dict[str, Any]) -> str:
    """``admin.<operation id>`` (``admin.CreateTenant``) of the matched route; without one, the
    method and the path template (never the raw path: it may carry names)."""
    route = scope.get("route")
    operation_id = getattr(route, "operation_id", None)
    if isinstance(operation_id, str) and operation_id:
        return f"admin.{operation_id}"
    path = getattr(route, "path", None)
    return f"admin.{scope['method']} {path if isinstance(path, str) else '-'}"


async def _close(stream: AsyncIterator[bytes]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


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
