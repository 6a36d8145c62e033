"""The one error tree of blindstore.

Every error the gateway can raise is a ``BlindstoreError``. Each class carries the S3 error
``code`` and HTTP ``status`` it renders as; ``server`` renders any of them as S3 XML in one place.
Foreign exceptions (botocore, hvac, sqlite, OS errors) are translated once, at the edge module
that calls the foreign library.

    BlindstoreError                      500 InternalError (generic; never shows internals)
    ├── ClientError                      4xx: the request is wrong; message is safe to show
    │   ├── AccessDenied                 403
    │   ├── InvalidAccessKeyId           403
    │   ├── SignatureDoesNotMatch        403
    │   ├── RequestTimeTooSkewed         403
    │   ├── AuthorizationHeaderMalformed 400
    │   ├── AuthorizationQueryParametersError 400
    │   ├── NoSuchBucket / NoSuchKey / NoSuchUpload / NoSuchTagSet / NoSuchTenant   404
    │   ├── BucketAlreadyExists / BucketAlreadyOwnedByYou / BucketNotEmpty  409
    │   ├── InvalidBucketName / KeyTooLongError / MetadataTooLarge / InvalidArgument /
    │   │   InvalidRequest / InvalidTag / MalformedXML / InvalidPart / InvalidPartOrder /
    │   │   EntityTooSmall / EntityTooLarge / BadDigest / InvalidDigest /
    │   │   XAmzContentSHA256Mismatch / IncompleteBody / RequestTimeout / InvalidURI /
    │   │   RequestHeaderSectionTooLarge / InvalidEncodingType / InvalidStorageClass   400
    │   ├── MissingContentLength         411
    │   ├── PreconditionFailed           412
    │   ├── InvalidRange                 416
│   │   └── InvalidPartNumber        416 (GET/HEAD ?partNumber past the object's parts)
    │   ├── MethodNotAllowed             405
    │   ├── ConditionalRequestConflict   409
    │   └── NotModified                  304 (rendered without a body)
    ├── NotImplementedOperation          501 NotImplemented
    ├── ServiceUnavailable               503 (Vault or a backend unreachable: fail closed)
    │   ├── KeyServiceUnavailable
    │   └── BackendUnavailable
    ├── IntegrityError                   500 (any decrypt/verification failure; one opaque error)
    ├── KeyServiceError                  500 (Vault refused: wrong context, permission denied)
    ├── BlobNotFound                     500 (a catalog row points at nothing: integrity event)
    └── ConfigError                      (startup only; never rendered)
        └── PolicyError                  a placement policy refused: every problem, with its line
"""

from __future__ import annotations

from collections.abc import Sequence


class BlindstoreError(Exception):
    """Base of every blindstore error. Renders as a generic 500 that reveals nothing."""

    code: str = "InternalError"
    status: int = 500
    default_message: str = "We encountered an internal error. Please try again."
    #: Client-visible errors show their message; server-side ones show only default_message.
    expose_message: bool = False

    def __init__(self, message: str | None = None, **fields: str) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        #: Extra XML elements rendered inside <Error> (e.g. BucketName, Key, UploadId).
        self.fields = fields

    @property
    def public_message(self) -> str:
        return self.message if self.expose_message else self.default_message


class ClientError(BlindstoreError):
    """The request is wrong. The message is safe to show to the client."""

    code = "InvalidRequest"
    status = 400
    default_message = "Invalid request."
    expose_message = True


# Authentication and authorisation
class AccessDenied(ClientError):
    code = "AccessDenied"
    status = 403
    default_message = "Access Denied"


class InvalidAccessKeyId(ClientError):
    code = "InvalidAccessKeyId"
    status = 403
    default_message = "The AWS Access Key Id you provided does not exist in our records."


class SignatureDoesNotMatch(ClientError):
    code = "SignatureDoesNotMatch"
    status = 403
    default_message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )


class RequestTimeTooSkewed(ClientError):
    code = "RequestTimeTooSkewed"
    status = 403
    default_message = "The difference between the request time and the current time is too large."


class AuthorizationHeaderMalformed(ClientError):
    code = "AuthorizationHeaderMalformed"
    status = 400
    default_message = "The authorization header is malformed."


class AuthorizationQueryParametersError(ClientError):
    code = "AuthorizationQueryParametersError"
    status = 400
    default_message = "Query-string authentication parameters are invalid."


# Not found
class NoSuchBucket(ClientError):
    code = "NoSuchBucket"
    status = 404
    default_message = "The specified bucket does not exist"


class NoSuchKey(ClientError):
    code = "NoSuchKey"
    status = 404
    default_message = "The specified key does not exist."


class NoSuchUpload(ClientError):
    code = "NoSuchUpload"
    status = 404
    default_message = (
        "The specified upload does not exist. The upload ID may be invalid, "
        "or the upload may have been aborted or completed."
    )


class NoSuchTenant(ClientError):
    """No tenant of that name (admin plane and CLI; S3 requests never name a tenant)."""

    code = "NoSuchTenant"
    status = 404
    default_message = "The specified tenant does not exist."


class NoSuchTagSet(ClientError):
    code = "NoSuchTagSet"
    status = 404
    default_message = "The TagSet does not exist"


# Conflicts
class BucketAlreadyExists(ClientError):
    code = "BucketAlreadyExists"
    status = 409
    default_message = (
        "The requested bucket name is not available. The bucket namespace is shared by all users "
        "of the system. Please select a different name and try again."
    )


class BucketAlreadyOwnedByYou(ClientError):
    code = "BucketAlreadyOwnedByYou"
    status = 409
    default_message = (
        "Your previous request to create the named bucket succeeded and you already own it."
    )


class BucketNotEmpty(ClientError):
    code = "BucketNotEmpty"
    status = 409
    default_message = "The bucket you tried to delete is not empty"


class ConditionalRequestConflict(ClientError):
    code = "ConditionalRequestConflict"
    status = 409
    default_message = (
        "A conflicting operation occurred. If using PutObject you can retry the request."
    )


# Bad input
class InvalidBucketName(ClientError):
    code = "InvalidBucketName"
    status = 400
    default_message = "The specified bucket is not valid."


class KeyTooLongError(ClientError):
    code = "KeyTooLongError"
    status = 400
    default_message = "Your key is too long"


class MetadataTooLarge(ClientError):
    code = "MetadataTooLarge"
    status = 400
    default_message = "Your metadata headers exceed the maximum allowed metadata size."


class InvalidArgument(ClientError):
    code = "InvalidArgument"
    status = 400
    default_message = "Invalid Argument"


class InvalidRequest(ClientError):
    code = "InvalidRequest"
    status = 400
    default_message = "Invalid Request"


class InvalidTag(ClientError):
    code = "InvalidTag"
    status = 400
    default_message = "The tag provided was not a valid tag."


class BadRequest(ClientError):
    """S3's code for a tag set over the count limit ("Object tags cannot be greater than 10")."""

    code = "BadRequest"
    status = 400
    default_message = "Bad Request"


class MalformedXML(ClientError):
    code = "MalformedXML"
    status = 400
    default_message = (
        "The XML you provided was not well-formed or did not validate against our published schema"
    )


class InvalidPart(ClientError):
    code = "InvalidPart"
    status = 400
    default_message = (
        "One or more of the specified parts could not be found. The part may not have been "
        "uploaded, or the specified entity tag may not match the part's entity tag."
    )


class InvalidPartOrder(ClientError):
    code = "InvalidPartOrder"
    status = 400
    default_message = (
        "The list of parts was not in ascending order. Parts must be ordered by part number."
    )


class EntityTooSmall(ClientError):
    code = "EntityTooSmall"
    status = 400
    default_message = "Your proposed upload is smaller than the minimum allowed object size."


class EntityTooLarge(ClientError):
    code = "EntityTooLarge"
    status = 400
    default_message = "Your proposed upload exceeds the maximum allowed object size."


class BadDigest(ClientError):
    code = "BadDigest"
    status = 400
    default_message = "The Content-MD5 or checksum you specified did not match what we received."


class InvalidDigest(ClientError):
    code = "InvalidDigest"
    status = 400
    default_message = "The Content-MD5 you specified is not valid."


class XAmzContentSHA256Mismatch(ClientError):
    code = "XAmzContentSHA256Mismatch"
    status = 400
    default_message = "The provided 'x-amz-content-sha256' header does not match what was computed."


class IncompleteBody(ClientError):
    code = "IncompleteBody"
    status = 400
    default_message = "You did not provide the number of bytes specified by the Content-Length"


class RequestTimeout(ClientError):
    code = "RequestTimeout"
    status = 400
    default_message = (
        "Your socket connection to the server was not read from or written to within the timeout "
        "period."
    )


class InvalidURI(ClientError):
    code = "InvalidURI"
    status = 400
    default_message = "Couldn't parse the specified URI."


class RequestHeaderSectionTooLarge(ClientError):
    code = "RequestHeaderSectionTooLarge"
    status = 400
    default_message = "Your request header section exceeds the maximum allowed."


class InvalidEncodingType(ClientError):
    code = "InvalidArgument"
    status = 400
    default_message = "Invalid Encoding Method specified in Request"


class InvalidStorageClass(ClientError):
    code = "InvalidStorageClass"
    status = 400
    default_message = "The storage class you specified is not valid"


class MissingContentLength(ClientError):
    code = "MissingContentLength"
    status = 411
    default_message = "You must provide the Content-Length HTTP header."


class PreconditionFailed(ClientError):
    code = "PreconditionFailed"
    status = 412
    default_message = "At least one of the pre-conditions you specified did not hold"


class InvalidRange(ClientError):
    code = "InvalidRange"
    status = 416
    default_message = "The requested range is not satisfiable"


class InvalidPartNumber(InvalidRange):
    code = "InvalidPartNumber"
    default_message = "The requested partnumber is not satisfiable"


class KeyShredded(ClientError):
    """The key that wrapped this data was crypto-shredded: it can never be read again.

    Rendered as 410 Gone, a permanent condition no client retries; the message names the scope
    (tenant or data subject), never a subject id.
    """

    code = "KeyShredded"
    status = 410
    default_message = (
        "The encryption key of this data was destroyed (crypto-shredding); it can never be read."
    )


class MethodNotAllowed(ClientError):
    code = "MethodNotAllowed"
    status = 405
    default_message = "The specified method is not allowed against this resource."


class NotModified(ClientError):
    code = "NotModified"
    status = 304
    default_message = "Not Modified"


class NotImplementedOperation(BlindstoreError):
    code = "NotImplemented"
    status = 501
    default_message = (
        "A header or query you provided implies functionality that is not implemented."
    )
    expose_message = True


class ServiceUnavailable(BlindstoreError):
    """A dependency is unreachable: fail closed, write nothing."""

    code = "ServiceUnavailable"
    status = 503
    default_message = "Service is unable to handle request."


class SlowDown(ServiceUnavailable):
    """Too many connections or requests in flight: the client should back off and retry."""

    code = "SlowDown"
    status = 503
    default_message = "Please reduce your request rate."
    expose_message = True


class KeyServiceUnavailable(ServiceUnavailable):
    """Vault/OpenBao cannot be reached (or timed out)."""


class BackendUnavailable(ServiceUnavailable):
    """A storage backend cannot be reached (or timed out)."""


class IntegrityError(BlindstoreError):
    """A stored object failed verification. One opaque error: no oracle, cause in logs only."""


class KeyServiceError(BlindstoreError):
    """Vault/OpenBao refused an operation (wrong context, permission denied, missing key)."""


class BlobNotFound(BlindstoreError):
    """A backend does not hold a blob the catalog points at."""


class ConfigError(BlindstoreError):
    """Invalid configuration, found at startup. Never rendered to S3 clients."""

    expose_message = True


class PolicyError(ConfigError):
    """A placement policy was refused. ``problems`` holds every reason at once, as
    ``(line, reason)`` pairs (1-based lines of ``source``; 0 when no line applies)."""

    def __init__(self, source: str, problems: Sequence[tuple[int, str]]) -> None:
        self.source = source
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = [
            f"{source}:{line}: {reason}" if line else f"{source}: {reason}"
            for line, reason in self.problems
        ]
        super().__init__(
            f"{source}: placement policy refused ({count} problem{'s' * (count != 1)}):\n"
            + "\n".join(lines)
        )
