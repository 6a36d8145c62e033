"""blindstore: an S3 encryption gateway for health data.

``from blindstore import Client`` is the Python SDK (``blindstore.sdk``, docs/sdk.md). Importing
it is cheap (boto3 loads at the first S3 call), which keeps the ``blindstore`` command fast.
"""

from __future__ import annotations

from blindstore.sdk import APIError, Client, Provenance

__all__ = ["APIError", "Client", "Provenance"]
