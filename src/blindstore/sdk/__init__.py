"""The blindstore Python SDK: ``Client`` for the S3 data plane and the admin plane (docs/sdk.md).

from blindstore import Client

client = Client("http://127.0.0.1:9000", access_key, secret_key, admin_token=token)
client.put_object("scans", "DUPONT/IRM.dcm", data, subject="patient-8c1f")
print(client.transparency("scans", "DUPONT/IRM.dcm"))
"""

from __future__ import annotations

from blindstore.sdk.client import Client
from blindstore.sdk.errors import (
    APIError,
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    TransportError,
)
from blindstore.sdk.types import (
    AccessKey,
    AuditPage,
    AuditProblem,
    AuditRecord,
    AuditVerification,
    Explanation,
    Health,
    ListedObject,
    NewAccessKey,
    NewTenant,
    ObjectInfo,
    ObjectPage,
    Page,
    PolicyProblem,
    PolicyValidation,
    Provenance,
    Tenant,
    TransparencyRecord,
)

__all__ = [
    "APIError",
    "AccessKey",
    "AuditPage",
    "AuditProblem",
    "AuditRecord",
    "AuditVerification",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "Explanation",
    "Health",
    "InvalidRequestError",
    "ListedObject",
    "NewAccessKey",
    "NewTenant",
    "NotFoundError",
    "ObjectInfo",
    "ObjectPage",
    "Page",
    "PolicyProblem",
    "PolicyValidation",
    "Provenance",
    "ServerError",
    "Tenant",
    "TransparencyRecord",
    "TransportError",
]
