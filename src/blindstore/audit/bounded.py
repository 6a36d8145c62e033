"""Audit fields copied from a request are bounded: a client (authenticated or not) must not be
able to write an arbitrarily large record by sending an arbitrarily long path or query.

An over-long value is cut and marked with its full length and SHA-256, so that the record still
identifies what was sent (the same over-long request always gives the same field) without
storing it.
"""

from __future__ import annotations

import hashlib

#: S3 keys are at most 1024 UTF-8 bytes: a real key is never cut.
MAX_KEY_BYTES = 1024
#: Bucket names are at most 63 characters; longer ones are refused, and recorded cut.
MAX_BUCKET_BYTES = 255
#: The list of query parameter names.
MAX_QUERY_BYTES = 512
_KEEP = 128


def bounded(value: str | None, limit: int) -> str | None:
    """``value`` if it takes at most ``limit`` UTF-8 bytes, else its first bytes followed by
    ``…[truncated: <n> bytes, sha256 <hex>]``."""
    if value is None:
        return None
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return value
    head = raw[:_KEEP].decode("utf-8", "ignore")
    digest = hashlib.sha256(raw).hexdigest()
    return f"{head}…[truncated: {len(raw)} bytes, sha256 {digest}]"
