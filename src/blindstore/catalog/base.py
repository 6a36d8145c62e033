"""The Catalog protocol: the sovereign namespace and the commit point.

An object is visible if and only if its catalog row exists; the gateway writes the blob first and
the row last. The catalog holds names, metadata, tags, ETags, the part manifest and the wrapped
DEK (which lives nowhere else). Listing order is S3's: UTF-8 byte order of keys.

Errors raised by implementations: ``BucketAlreadyExists`` (name taken, by anyone),
``BucketNotEmpty``, ``NoSuchBucket``, ``NoSuchKey``, ``NoSuchUpload``, ``PreconditionFailed``
(conditional write lost), ``ServiceUnavailable`` (database unreachable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, runtime_checkable

from blindstore.audit.chain import AuditRecord, Checkpoint
from blindstore.audit.events import AuditEvent, AuditFilter
from blindstore.audit.rollback import ObjectMark


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: bytes  # 16 random bytes, immutable, never the human name
    name: str
    key_name: str  # Transit key wrapping this tenant's DEKs
    container: str  # random per-tenant container name on every backend
    created: float
    shredded: float | None = None  # when the tenant was crypto-shredded


@dataclass(frozen=True, slots=True)
class AccessKey:
    """S3 credentials. The secret is kept sealed (wrapped under the credentials Transit key,
    ``keys.credentials``): a copy of the catalog gives no usable secret.

    ``secret_key`` is the clear secret of a row written before the catalog stored sealed
    secrets (revision 0008), until ``seal_access_key`` replaces it; never written otherwise.
    """

    access_key_id: str
    sealed_secret: str | None = field(repr=False)
    tenant_id: bytes
    created: float
    secret_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AccessKeyInfo:
    """An access key without its secret: what listings and revocations return."""

    access_key_id: str
    tenant_id: bytes
    created: float


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    tenant_id: bytes
    created: float
    region: str = "us-east-1"


@dataclass(frozen=True, slots=True)
class StoredPart:
    """One encrypted segment of an object, stored as one blob."""

    part_number: int  # 0 for a single PUT, 1..10000 for client multipart parts
    blob: str
    size: int  # plaintext bytes
    stored_size: int  # ciphertext bytes on the backend
    etag: str  # hex MD5 of the part's plaintext


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    bucket: str
    key: str
    tenant_id: bytes
    object_id: bytes
    #: Backends holding a complete copy of every part, in read-preference order.
    backends: tuple[str, ...]
    container: str
    parts: tuple[StoredPart, ...]
    size: int
    etag: str  # without quotes: hex MD5, or "md5-of-md5s-N" for multipart
    last_modified: float
    wrapped_dek: str
    key_name: str
    key_version: int
    #: System metadata as S3 returns it (content-type, content-encoding, content-disposition,
    #: content-language, cache-control, expires), lower-case names.
    headers: dict[str, str] = field(default_factory=dict)
    user_metadata: dict[str, str] = field(default_factory=dict)
    #: Checksums given at upload (algorithm lower-case → base64 value), returned on request.
    checksums: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: HMAC over the canonical row, keyed from the DEK; see crypto.row_mac.
    row_mac: bytes = b""
    #: Targets that failed during the write and must get a copy (``blindstore repair``).
    repairs: tuple[str, ...] = ()
    #: Origin system, consent reference, legal basis (``blindstore.provenance``).
    provenance: dict[str, str] = field(default_factory=dict)
    #: Retention end, seconds since the epoch (``blindstore retention enforce``).
    retention_until: float | None = None
    #: When its last replica failed verification (seconds since the epoch), until
    #: ``blindstore repair`` finds a replica that verifies again. None: healthy.
    quarantined: float | None = None


#: What ``Catalog.mark_replica_bad`` did: the replica moved to ``repairs`` (another one remains),
#: the object was quarantined (it was the last one), or nothing (the row changed meanwhile).
ReplicaMark = Literal["moved_to_repairs", "quarantined", "unchanged"]


@dataclass(frozen=True, slots=True)
class Upload:
    upload_id: str
    bucket: str
    key: str
    tenant_id: bytes
    object_id: bytes
    #: The placement's targets, in preference order; each part goes to all of them.
    backends: tuple[str, ...]
    container: str
    wrapped_dek: str
    key_name: str
    key_version: int
    initiated: float
    headers: dict[str, str] = field(default_factory=dict)
    user_metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    checksum_algorithm: str | None = None
    #: How many targets must store each part (the placement's write quorum).
    quorum: int = 1
    provenance: dict[str, str] = field(default_factory=dict)
    retention_until: float | None = None
    #: HMAC over the canonical upload row, keyed from the DEK; empty for an upload started
    #: before catalog revision 0007 (refused: it cannot be authenticated).
    row_mac: bytes = b""


@dataclass(frozen=True, slots=True)
class UploadPart:
    upload_id: str
    part_number: int
    blob: str
    size: int
    stored_size: int
    etag: str
    last_modified: float
    checksums: dict[str, str] = field(default_factory=dict)
    #: Where this part landed (a subset of the upload's targets, at least its quorum).
    backends: tuple[str, ...] = ()
    #: HMAC over the canonical part row, keyed from the upload's DEK; empty before 0007.
    row_mac: bytes = b""


@dataclass(frozen=True, slots=True)
class ListPage:
    objects: list[ObjectRecord]
    common_prefixes: list[str]
    truncated: bool
    #: When ``truncated``: the last key or common prefix returned, where the next page starts
    #: (pass it as ``start_after``). None when the listing is complete.
    next_marker: str | None


@dataclass(frozen=True, slots=True)
class UploadPage:
    uploads: list[Upload]
    truncated: bool


@dataclass(frozen=True, slots=True)
class SubjectKey:
    """The Transit key of one data subject (patient) of a tenant.

    ``subject_digest`` identifies the subject (``blindstore.subjects.subject_digest``); the id
    itself is stored nowhere. The key name holds a random id, so Vault never sees the subject.
    """

    key_name: str
    tenant_id: bytes
    subject_digest: bytes
    created: float
    shredded: float | None = None
    #: False for a digest written before catalog revision 0009 (unkeyed SHA-256), until the
    #: gateway converts it (``blindstore.subjects.convert_unkeyed_digests``).
    digest_keyed: bool = True


ShredScope = Literal["tenant", "subject"]


@dataclass(frozen=True, slots=True)
class Shred:
    """A crypto-shredding request: keys to destroy once ``destroy_after`` has passed."""

    shred_id: str
    scope: ShredScope
    tenant_id: bytes
    key_names: tuple[str, ...]
    requested: float
    destroy_after: float
    operator: str
    destroyed: float | None = None
    #: The signed certificate (JSON text), once the keys are destroyed.
    certificate: str | None = None


#: Seconds the blobs of a replaced or deleted row are kept (``storage.delete_delay_seconds``).
DELETE_DELAY_SECONDS: Final = 900.0


@dataclass(frozen=True, slots=True)
class DeferredDelete:
    """A blob of a replaced or deleted row, to delete from ``backend`` once ``not_before`` has
    passed: reads that found the row before it went may still be streaming it."""

    backend: str
    container: str
    blob: str
    not_before: float


WrappedTable = Literal["objects", "uploads"]


@dataclass(frozen=True, slots=True)
class WrappedRef:
    """One wrapped DEK held by the catalog (an object or a pending upload), for rewrap.

    ``locator`` is (bucket, key) for an object, (upload id, "") for an upload.
    """

    table: WrappedTable
    locator: tuple[str, str]
    tenant_id: bytes
    object_id: bytes
    wrapped: str
    key_version: int


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """What a set of keys protects: object rows, their plaintext bytes, pending uploads."""

    objects: int = 0
    bytes: int = 0
    uploads: int = 0


@dataclass(frozen=True, slots=True)
class BucketKey:
    """A bucket key of bucket-key mode, wrapped by the tenant's Transit key like a DEK.

    ``wrapped`` is ``vault:vN:...`` with context ``dek_context(tenant_id, bucket_key_id)``; a
    rewrap changes ``wrapped`` and ``key_version`` only.
    """

    bucket_key_id: bytes  # 16 random bytes
    tenant_id: bytes
    bucket: str
    wrapped: str
    key_name: str
    key_version: int
    created: float


@dataclass(frozen=True, slots=True)
class ReplicaUsage:
    """The objects sharing one replica set: where they are, how many, how many bytes.

    ``bytes`` counts plaintext (the objects' sizes); the ciphertext each replica holds is a
    little larger (docs/format.md). ``backends`` keeps the rows' read-preference order, so one
    set of backends may appear under several orders.
    """

    backends: tuple[str, ...]
    repairs: tuple[str, ...]
    objects: int
    bytes: int


@runtime_checkable
class Catalog(Protocol):
    # tenants and credentials
    async def create_tenant(self, tenant: Tenant) -> None: ...
    async def get_tenant(self, tenant_id: bytes) -> Tenant | None: ...
    async def get_tenant_by_name(self, name: str) -> Tenant | None: ...
    async def list_tenants(self) -> list[Tenant]: ...
    async def ping(self) -> None:
        """Return once the database answers one trivial query (readiness)."""
        ...

    async def add_access_key(self, key: AccessKey) -> None: ...
    async def get_access_key(self, access_key_id: str) -> AccessKey | None: ...

    # buckets (names are global, as in S3)
    async def create_bucket(self, bucket: Bucket) -> None:
        """Raises BucketAlreadyExists if the name exists (whoever owns it)."""
        ...

    async def get_bucket(self, name: str) -> Bucket | None: ...
    async def list_buckets(self, tenant_id: bytes) -> list[Bucket]: ...

    async def delete_bucket(self, name: str) -> list[UploadPart]:
        """Delete an empty bucket; aborts its pending uploads and returns their parts (to delete
        from the backend). Raises BucketNotEmpty if it holds objects, NoSuchBucket if absent."""
        ...

    # objects
    async def put_object(
        self,
        record: ObjectRecord,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        audit: AuditEvent | None = None,
    ) -> ObjectRecord | None:
        """Commit a row, atomically replacing any row with the same (bucket, key); ``audit``
        (the write's record) is appended to the audit chain in the same transaction.

        ``if_none_match``: fail with PreconditionFailed if a row exists. ``if_match``: the current
        row's etag must equal it (PreconditionFailed otherwise, NoSuchKey if there is no row).
        Returns the replaced row, or None. The replaced row's blobs (except any ``record``
        uses) are recorded for deferred deletion in the same transaction (``due_deletions``).

        Checked in the commit's transaction, whatever a caller's cache says: the bucket exists
        (NoSuchBucket) and is ``record.tenant_id``'s (AccessDenied); no other object row and no
        pending upload holds ``record.object_id`` (IntegrityError).
        """
        ...

    async def get_object(self, bucket: str, key: str) -> ObjectRecord | None: ...

    async def delete_object(
        self, bucket: str, key: str, *, tenant_id: bytes | None = None
    ) -> ObjectRecord | None:
        """Remove a row; return it, or None if there was none. Its blobs are recorded for
        deferred deletion in the same transaction. With ``tenant_id``: AccessDenied unless that
        tenant owns the bucket and the row, checked in the same transaction."""
        ...

    async def set_tags(
        self, bucket: str, key: str, tags: dict[str, str], *, tenant_id: bytes | None = None
    ) -> None:
        """Replace an object's tags; NoSuchKey if absent. With ``tenant_id``: AccessDenied
        unless that tenant owns the bucket and the row, checked in the same transaction."""
        ...

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = 1000,
        tenant_id: bytes | None = None,
    ) -> ListPage:
        """Keys > start_after with the prefix, in byte order; keys containing ``delimiter`` after
        the prefix are rolled up into common prefixes (each counts once towards max_keys).
        With ``tenant_id``: AccessDenied unless that tenant owns the bucket (same snapshot)."""
        ...

    # multipart
    async def create_upload(self, upload: Upload) -> None:
        """Record a pending upload; NoSuchBucket, AccessDenied unless ``upload.tenant_id`` owns
        the bucket, IntegrityError if an object or upload holds its object id."""
        ...

    async def get_upload(self, upload_id: str) -> Upload | None: ...

    async def put_part(self, part: UploadPart) -> UploadPart | None:
        """Record a part (last write wins); return the replaced part, or None.
        Raises NoSuchUpload if the upload is gone (completed or aborted meanwhile)."""
        ...

    async def list_parts(
        self, upload_id: str, *, part_number_marker: int = 0, max_parts: int = 1000
    ) -> tuple[list[UploadPart], bool]: ...

    async def list_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
        tenant_id: bytes | None = None,
    ) -> UploadPage:
        """Pending uploads of a bucket (ListMultipartUploads). With ``tenant_id``: AccessDenied
        unless that tenant owns the bucket (same snapshot)."""
        ...

    async def complete_upload(
        self,
        upload_id: str,
        record: ObjectRecord,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        audit: AuditEvent | None = None,
    ) -> tuple[ObjectRecord | None, list[UploadPart]]:
        """In one transaction: remove the upload and its parts, commit ``record`` (and append
        ``audit`` to the audit chain).

        Returns (replaced object row or None, parts not used by ``record``); the replaced row's
        blobs are recorded for deferred deletion as in ``put_object``. Raises NoSuchUpload if
        the upload is gone; preconditions as in ``put_object``.
        """
        ...

    async def abort_upload(self, upload_id: str) -> list[UploadPart]:
        """Remove an upload and return its parts. Raises NoSuchUpload if absent."""
        ...

    # maintenance
    async def referenced_blobs(self, backend: str) -> set[tuple[str, str]]:
        """Every (container, blob) on ``backend`` that an object (as a replica or a pending
        repair) or a pending part copy points at."""
        ...

    async def objects_to_repair(
        self, *, after: tuple[str, str] = ("", ""), limit: int = 100
    ) -> list[ObjectRecord]:
        """Objects with pending repairs or quarantined, ordered by (bucket, key), strictly
        after ``after``."""
        ...

    async def mark_replica_bad(
        self, bucket: str, key: str, object_id: bytes, backend: str, when: float
    ) -> ReplicaMark:
        """A replica failed verification: atomically, if the row still holds ``object_id`` and
        ``backend`` is one of its replicas, move it to ``repairs`` when another replica remains,
        else quarantine the object at ``when`` (its last replica stays listed, so that a repair
        can check it again; an object already quarantined keeps its date)."""
        ...

    # deferred deletion of the blobs of replaced and deleted rows
    async def due_deletions(self, now: float, *, limit: int = 500) -> list[DeferredDelete]:
        """Recorded blobs whose ``not_before`` is at or before ``now``, earliest first."""
        ...

    async def deferred_blobs(self, backend: str) -> set[tuple[str, str]]:
        """Every (container, blob) on ``backend`` recorded for deferred deletion, due or not."""
        ...

    async def postpone_deletions(self, blobs: Sequence[DeferredDelete], until: float) -> None:
        """Move the ``not_before`` of recorded blobs to ``until`` (a blob still being read)."""
        ...

    async def finish_deletions(self, blobs: Sequence[DeferredDelete]) -> None:
        """Forget recorded blobs (deleted from their backend); absent ones are ignored."""
        ...

    async def set_replicas(
        self,
        bucket: str,
        key: str,
        object_id: bytes,
        backends: tuple[str, ...],
        repairs: tuple[str, ...],
    ) -> bool:
        """Replace an object's replica lists if the row still holds ``object_id``; False if the
        object was deleted or replaced meanwhile (its blobs are then someone else's garbage).
        Only called once a replica verified: the object's quarantine, if any, is lifted."""
        ...

    # key lifecycle (rotation, data-subject keys, crypto-shredding)
    async def get_subject_key(self, tenant_id: bytes, subject_digest: bytes) -> SubjectKey | None:
        """The live (not shredded) key of a data subject, or None."""
        ...

    async def add_subject_key(self, key: SubjectKey) -> SubjectKey:
        """Record a subject's key; if a live one was recorded concurrently, return that one."""
        ...

    async def list_subject_keys(self, tenant_id: bytes) -> list[SubjectKey]:
        """Every subject key of a tenant, shredded ones included."""
        ...

    async def unkeyed_subject_keys(self, *, limit: int = 200) -> list[SubjectKey]:
        """Subject keys (any tenant) whose digest is still unkeyed, at most ``limit``."""
        ...

    async def set_keyed_subject_digest(self, key_name: str, unkeyed: bytes, keyed: bytes) -> bool:
        """Replace a key's unkeyed digest by its keyed one (compare and set); False if the row
        no longer holds ``unkeyed`` as an unkeyed digest."""
        ...

    async def record_shred(self, shred: Shred) -> None:
        """Record a shredding request and mark its tenant or subject keys as shredded."""
        ...

    async def cancel_shred(self, shred_id: str) -> None:
        """Forget a shredding request whose keys were not destroyed, and its marks."""
        ...

    async def finish_shred(self, shred_id: str, destroyed: float, certificate: str) -> None:
        """Record that a request's keys were destroyed, with its certificate."""
        ...

    async def list_shreds(self) -> list[Shred]:
        """Every shredding request, oldest first."""
        ...

    async def revoked_key_names(self) -> frozenset[str]:
        """The key names of every shredding request, pending or done (reads must refuse)."""
        ...

    async def key_usage(self, key_names: Sequence[str]) -> KeyUsage:
        """What the named keys protect."""
        ...

    async def wrapped_below(
        self,
        table: WrappedTable,
        key_name: str,
        version: int,
        *,
        after: tuple[str, str] = ("", ""),
        limit: int = 200,
    ) -> list[WrappedRef]:
        """Rows of ``table`` whose DEK is wrapped by ``key_name`` below ``version``, ordered by
        locator, strictly after ``after``."""
        ...

    async def count_wrapped_below(self, key_name: str, version: int) -> int:
        """How many objects and uploads have a DEK wrapped by ``key_name`` below ``version``."""
        ...

    async def replace_wrapped(self, changes: Sequence[tuple[WrappedRef, str, int]]) -> int:
        """Store rewrapped DEKs ``(ref, new wrapped, new version)``, each only if its row still
        holds ``ref.wrapped`` (a row overwritten meanwhile is left alone); the count stored."""
        ...

    async def objects_with_keys(
        self, key_names: Sequence[str], *, after: tuple[str, str] = ("", ""), limit: int = 200
    ) -> list[ObjectRecord]:
        """Objects whose DEK the named keys wrap, ordered by (bucket, key), after ``after``."""
        ...

    async def uploads_with_keys(self, key_names: Sequence[str]) -> list[Upload]:
        """Pending uploads whose DEK the named keys wrap."""
        ...

    async def delete_object_version(
        self, bucket: str, key: str, object_id: bytes
    ) -> ObjectRecord | None:
        """Remove the row if it still holds ``object_id``; return it, or None. Its blobs are
        recorded for deferred deletion as in ``delete_object``."""
        ...

    async def purge_tenant(self, tenant_id: bytes) -> KeyUsage:
        """Delete every bucket, object and upload of a tenant; what was deleted. The tenant row,
        its access keys (so that its clients get a clear KeyShredded error rather than an
        unknown key) and its shredding records stay."""
        ...

    # the audit trail (blindstore.audit): hash-chained, appended under the write lock
    async def append_audit(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        """Append ``events`` in one transaction, continuing the chain: each gets the next seq
        and is hashed over the previous record's hash. Serialised against every other append
        (SQLite's write lock; a transaction-level advisory lock on PostgreSQL), so that two
        gateways can never fork the chain."""
        ...

    async def audit_records(self, *, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        """Records in seq order, seqs strictly after ``after_seq`` (a page of the whole log)."""
        ...

    async def query_audit(
        self,
        selection: AuditFilter,
        *,
        limit: int = 100,
        newest_first: bool = True,
        cursor: int | None = None,
    ) -> list[AuditRecord]:
        """Records matching ``selection``, newest first (seqs below ``cursor``) or in seq order
        (seqs above ``cursor``); ``cursor`` is the last seq of the previous page."""
        ...

    async def audit_head(self) -> tuple[int, bytes] | None:
        """The last record's seq and hash; None for an empty log."""
        ...

    async def last_access(self, object_id: bytes) -> float | None:
        """When the object was last read: the latest successful GetObject/HeadObject."""
        ...

    async def add_audit_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Record a signed checkpoint if it extends the checkpoints: its seq is above the
        latest one's and, if chained, it names the latest one (compare-and-set, serialised with
        appends). False, and nothing stored, otherwise (another gateway signed first)."""
        ...

    async def audit_checkpoints(self, *, since_seq: int = 0) -> list[Checkpoint]:
        """Every checkpoint at or after ``since_seq``, by seq."""
        ...

    async def latest_audit_checkpoint(self) -> Checkpoint | None:
        """The checkpoint with the highest seq; None when there is none."""
        ...

    async def object_marks(
        self, *, after: tuple[str, str] = ("", ""), limit: int = 1000
    ) -> list[ObjectMark]:
        """Every live object's bucket, key, object id and row MAC, ordered by (bucket, key),
        after ``after`` (for ``audit verify``'s rollback check)."""
        ...

    async def close(self) -> None: ...

    # retention (``blindstore retention enforce``)
    async def expired_objects(
        self,
        before: float,
        *,
        tenant_id: bytes | None = None,
        bucket: str | None = None,
        after: tuple[float, str, str] | None = None,
        limit: int = 200,
    ) -> list[ObjectRecord]:
        """Objects whose ``retention_until`` is set and earlier than ``before`` (optionally of
        one tenant or bucket), ordered by (retention_until, bucket, key), strictly after
        ``after`` in that order; at most ``limit``."""
        ...

    # bucket keys (bucket-key mode; rows are never deleted: objects may still name them)
    async def put_bucket_key(self, key: BucketKey) -> None:
        """Record a new bucket key; InvalidArgument if its id exists."""
        ...

    async def get_bucket_key(self, bucket_key_id: bytes) -> BucketKey | None: ...

    async def bucket_keys_below(
        self, key_name: str, version: int, *, after: bytes = b"", limit: int = 100
    ) -> list[BucketKey]:
        """Bucket keys under ``key_name`` wrapped by a version below ``version`` (to rewrap),
        ordered by id, ids strictly after ``after``."""
        ...

    async def rewrap_bucket_key(
        self, bucket_key_id: bytes, old_wrapped: str, wrapped: str, key_version: int
    ) -> bool:
        """Replace a bucket key's wrapped form if it still is ``old_wrapped`` (compare and set);
        False if it changed meanwhile or is gone."""
        ...

    # transparency (reports over where objects are)
    async def replica_usage(
        self, *, tenant_id: bytes | None = None, bucket: str | None = None
    ) -> list[ReplicaUsage]:
        """Objects and bytes per distinct replica set (``backends``, ``repairs``), of one
        tenant and/or one bucket (every object without either), in no particular order."""
        ...

    # tenants and access keys, for the admin plane (pages by keyset: strictly after a marker)
    async def list_tenants_page(self, *, after: str = "", limit: int = 100) -> list[Tenant]:
        """At most ``limit`` tenants by name, names strictly after ``after``."""
        ...

    async def list_access_keys(
        self, tenant_id: bytes, *, after: str = "", limit: int = 100
    ) -> list[AccessKeyInfo]:
        """At most ``limit`` of a tenant's access keys (never their secrets) by id, ids strictly
        after ``after``."""
        ...

    async def delete_access_key(self, access_key_id: str) -> AccessKeyInfo | None:
        """Revoke credentials: remove the key; return it, or None if there was none."""
        ...

    async def access_keys_in_clear(self) -> list[AccessKey]:
        """Access keys whose secret is still stored in clear (written before sealing)."""
        ...

    async def seal_access_key(self, access_key_id: str, sealed_secret: str) -> bool:
        """Store the sealed secret of a key and erase its clear one; False if the key is gone.

        On SQLite, the write-ahead log is then checkpointed and truncated, so that the erased
        value lingers in no file (``secure_delete`` already zeroes freed pages).
        """
        ...
