"""The SDK's errors: one small tree for both planes, each error carrying status, code, message.

    APIError                 any refusal or failure (``status`` 0: no answer at all)
    ├── AuthenticationError  401/403: wrong or missing credentials, access denied
    ├── InvalidRequestError  400/411/412/416/422: the request is wrong
    ├── NotFoundError        404: NoSuchBucket, NoSuchKey, NoSuchTenant...
    ├── ConflictError        409: BucketAlreadyExists, TenantAlreadyExists...
    ├── ServerError          5xx: the gateway or a dependency failed
    └── TransportError       no HTTP answer (connection refused, timeout)

S3 errors come from botocore and admin errors from the admin plane's JSON body; both are
translated here once, so callers catch ``blindstore.sdk.NotFoundError`` whichever plane spoke.
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """A request failed. ``code`` is the S3 error code or the admin plane's ``code``."""

    def __init__(self, status: int, code: str, message: str, *, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        #: The admin plane's ``details`` (which field was wrong), when it gave some.
        self.details = details


class AuthenticationError(APIError):
    """401/403: wrong or missing credentials, or access denied."""


class InvalidRequestError(APIError):
    """The request is wrong (400, 411, 412, 416, 422)."""


class NotFoundError(APIError):
    """404: no such bucket, key, tenant, access key..."""


class ConflictError(APIError):
    """409: the request conflicts with the current state."""


class ServerError(APIError):
    """5xx: the gateway or one of its dependencies failed."""


class TransportError(APIError):
    """No HTTP answer: connection refused, reset, timed out."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "TransportError", message)


def error_for(status: int, code: str, message: str, *, details: Any = None) -> APIError:
    """The error class for an HTTP status."""
    kind: type[APIError]
    if status in (401, 403):
        kind = AuthenticationError
    elif status == 404:
        kind = NotFoundError
    elif status == 409:
        kind = ConflictError
    elif status >= 500:
        kind = ServerError
    elif 400 <= status < 500:
        kind = InvalidRequestError
    else:
        kind = APIError
    return kind(status, code, message, details=details)


_BODYLESS_CODES = {
    304: "NotModified",
    400: "BadRequest",
    403: "AccessDenied",
    404: "NotFound",
    412: "PreconditionFailed",
}


def from_botocore(exc: Exception) -> APIError:
    """A botocore ``ClientError`` (or transport failure) as an SDK error."""
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    if not response:
        return TransportError(str(exc))
    error = response.get("Error", {})
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    code = str(error.get("Code") or "Unknown")
    if code.isdigit():
        # HEAD answers carry no body: botocore reports the status as the code.
        code = _BODYLESS_CODES.get(int(code), "Unknown")
    message = str(error.get("Message") or "")
    return error_for(status, code, message)
