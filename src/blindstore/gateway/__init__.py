"""The orchestrator: the only package that sequences I/O.

It takes the protocols (Catalog, KeyWrapper, Backend) in its constructor and never imports a
concrete implementation. Order of effects on a write: data key → encrypt while streaming to the
backend → verify digests → catalog commit (the commit point) → delete what was replaced.

Modules: ``records`` (dataclasses, the canonical row, limits), ``streams`` (async stream
helpers), ``base`` (shared state, identity, buckets, blob cleanup), ``writes``, ``reads``,
``multipart``, and ``core`` (``Gateway``, composing them, plus copy, delete, tags and listing).
"""

from blindstore.gateway.core import Gateway
from blindstore.gateway.records import (
    MAX_PARTS,
    MIN_PART_SIZE,
    BodyCheck,
    ObjectRead,
    Principal,
    WriteMeta,
    canonical_row,
    multipart_etag,
)

#: The name the row canonicalisation had when the gateway was one module (tests import it).
_canonical_row = canonical_row

__all__ = [
    "MAX_PARTS",
    "MIN_PART_SIZE",
    "BodyCheck",
    "Gateway",
    "ObjectRead",
    "Principal",
    "WriteMeta",
    "canonical_row",
    "multipart_etag",
]
