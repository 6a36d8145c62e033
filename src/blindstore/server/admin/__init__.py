"""The admin plane: JSON over HTTP under ``/-/`` on the gateway's port (FastAPI, OpenAPI).

``/-/`` can never be an S3 path (bucket names have at least three characters), so the S3 plane
hands these requests over untouched. Authentication is a separate admin bearer token
(``admin.token``/``admin.token_file``): a tenant's S3 keys open nothing here. Health and
readiness are open, for load balancers and orchestrators.

One module per area (``health``, ``policy``, ``tenants``...), each an ``APIRouter``; ``app``
assembles them. See docs/operations.md (the admin API) and docs/sdk.md (its Python client).
"""

from __future__ import annotations

from blindstore.server.admin.app import ROUTERS, create_admin_app
from blindstore.server.admin.common import AdminContext

__all__ = ["ROUTERS", "AdminContext", "create_admin_app"]
