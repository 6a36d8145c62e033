"""The catalog's tables, as SQLAlchemy Core metadata (the migrations must produce exactly this).

Names sort in UTF-8 byte order, as S3 lists them: SQLite's default BINARY collation compares the
UTF-8 bytes of TEXT; PostgreSQL needs ``COLLATE "C"`` on the columns that are ordered or compared
with ``<``/``>`` (bucket names and object keys), whatever the database's default collation is.

Dict-valued fields (headers, metadata, tags, checksums) and the part manifest are JSON text: they
are read and written whole, never queried, so columns of their own would only cost joins.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.dialects import postgresql

#: TEXT compared byte by byte on every dialect (see the module docstring).
ByteOrderedText = Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", LargeBinary(16), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("key_name", Text, nullable=False),
    Column("container", Text, nullable=False),
    Column("created", Double, nullable=False),
    #: When the tenant was crypto-shredded (every request then fails with KeyShredded).
    Column("shredded", Double, nullable=True),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", Text, primary_key=True),
    #: The clear secret of a row written before revision 0008; NULL once sealed.
    Column("secret_key", Text, nullable=True),
    Column("tenant_id", LargeBinary(16), ForeignKey(tenants.c.tenant_id), nullable=False),
    Column("created", Double, nullable=False),
    #: The secret wrapped under the credentials Transit key (``keys.credentials``).
    Column("sealed_secret", Text, nullable=True),
    Index(None, "tenant_id"),
)

buckets = Table(
    "buckets",
    metadata,
    Column("name", ByteOrderedText, primary_key=True),
    Column("tenant_id", LargeBinary(16), ForeignKey(tenants.c.tenant_id), nullable=False),
    Column("created", Double, nullable=False),
    Column("region", Text, nullable=False),
    Index(None, "tenant_id", "name"),
)

objects = Table(
    "objects",
    metadata,
    Column("bucket", ByteOrderedText, ForeignKey(buckets.c.name), primary_key=True),
    Column("key", ByteOrderedText, primary_key=True),
    Column("tenant_id", LargeBinary(16), nullable=False),
    Column("object_id", LargeBinary(16), nullable=False),
    #: JSON list of the backends holding a complete copy, in read-preference order.
    Column("backends", Text, nullable=False),
    Column("container", Text, nullable=False),
    #: JSON list of [part_number, blob, size, stored_size, etag].
    Column("parts", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("etag", Text, nullable=False),
    Column("last_modified", Double, nullable=False),
    Column("wrapped_dek", Text, nullable=False),
    Column("key_name", Text, nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("headers", Text, nullable=False),
    Column("user_metadata", Text, nullable=False),
    Column("checksums", Text, nullable=False),
    Column("tags", Text, nullable=False),
    Column("row_mac", LargeBinary, nullable=False),
    #: JSON list of the targets that failed during the write (``blindstore repair``).
    Column("repairs", Text, nullable=False),
    #: JSON object: origin system, consent reference, legal basis (``blindstore.provenance``).
    Column("provenance", Text, nullable=False, server_default="{}"),
    #: Retention end (seconds since the epoch), for ``blindstore retention enforce``.
    Column("retention_until", Double, nullable=True),
    #: When every replica failed verification (seconds since the epoch); NULL: healthy.
    Column("quarantined", Double, nullable=True),
    Index(None, "retention_until"),
    # An object id names one object version, for ever: never two rows (nor a pending upload,
    # see ``SqlCatalog._require_unused_object_id``) with one id.
    Index(None, "object_id", unique=True),
)

uploads = Table(
    "uploads",
    metadata,
    Column("upload_id", Text, primary_key=True),
    Column("bucket", ByteOrderedText, ForeignKey(buckets.c.name), nullable=False),
    Column("key", ByteOrderedText, nullable=False),
    Column("tenant_id", LargeBinary(16), nullable=False),
    Column("object_id", LargeBinary(16), nullable=False),
    #: JSON list of the placement's targets.
    Column("backends", Text, nullable=False),
    Column("container", Text, nullable=False),
    Column("wrapped_dek", Text, nullable=False),
    Column("key_name", Text, nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("initiated", Double, nullable=False),
    Column("headers", Text, nullable=False),
    Column("user_metadata", Text, nullable=False),
    Column("tags", Text, nullable=False),
    Column("checksum_algorithm", Text, nullable=True),
    Column("quorum", Integer, nullable=False),
    Column("provenance", Text, nullable=False, server_default="{}"),
    Column("retention_until", Double, nullable=True),
    #: HMAC over the canonical upload row, keyed from the DEK (catalog revision 0007); NULL for
    #: uploads started before it, which are refused (docs/format.md §7).
    Column("row_mac", LargeBinary, nullable=True),
    # ListMultipartUploads pages by (key, upload_id) within a bucket.
    Index(None, "bucket", "key", "upload_id"),
    Index(None, "object_id", unique=True),
)

upload_parts = Table(
    "upload_parts",
    metadata,
    Column(
        "upload_id",
        Text,
        ForeignKey(uploads.c.upload_id, ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("part_number", Integer, primary_key=True, autoincrement=False),
    Column("blob", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("stored_size", BigInteger, nullable=False),
    Column("etag", Text, nullable=False),
    Column("last_modified", Double, nullable=False),
    Column("checksums", Text, nullable=False),
    #: JSON list of the backends this part landed on.
    Column("backends", Text, nullable=False),
    #: HMAC over the canonical part row, keyed from the DEK (catalog revision 0007).
    Column("row_mac", LargeBinary, nullable=True),
)

#: Per data-subject (patient) Transit keys. The subject id itself is never stored: only
#: ``subject_digest`` (see ``blindstore.subjects``); the key name holds a random id.
subject_keys = Table(
    "subject_keys",
    metadata,
    Column("key_name", Text, primary_key=True),
    Column("tenant_id", LargeBinary(16), ForeignKey(tenants.c.tenant_id), nullable=False),
    Column("subject_digest", LargeBinary(32), nullable=False),
    Column("created", Double, nullable=False),
    #: Set when the key was crypto-shredded; a later PUT for the subject gets a new key.
    Column("shredded", Double, nullable=True),
    #: True when ``subject_digest`` is keyed (Transit HMAC); false: the SHA-256 digest of rows
    #: written before revision 0009, converted at the gateway's start.
    Column("digest_keyed", Boolean, nullable=False, server_default=false()),
    # At most one live key per subject; shredded ones stay as a record.
    Index(
        None,
        "tenant_id",
        "subject_digest",
        unique=True,
        sqlite_where=text("shredded IS NULL"),
        postgresql_where=text("shredded IS NULL"),
    ),
)

#: Crypto-shredding requests and their certificates (``blindstore keys shred``).
shreds = Table(
    "shreds",
    metadata,
    Column("shred_id", Text, primary_key=True),
    #: ``tenant`` or ``subject``.
    Column("scope", Text, nullable=False),
    Column("tenant_id", LargeBinary(16), nullable=False),
    #: JSON list of the Transit keys destroyed.
    Column("key_names", Text, nullable=False),
    Column("requested", Double, nullable=False),
    #: The grace period ends here; until then ``blindstore keys restore`` can undo it.
    Column("destroy_after", Double, nullable=False),
    Column("destroyed", Double, nullable=True),
    Column("operator", Text, nullable=False),
    #: The signed certificate (JSON), once the keys are destroyed.
    Column("certificate", Text, nullable=True),
)

#: Bucket-key mode: one row per bucket key, wrapped by the tenant's Transit key. No foreign keys:
#: a row outlives its bucket's deletion harmlessly, and objects name it by id only.
bucket_keys = Table(
    "bucket_keys",
    metadata,
    Column("bucket_key_id", LargeBinary(16), primary_key=True),
    Column("tenant_id", LargeBinary(16), nullable=False),
    Column("bucket", ByteOrderedText, nullable=False),
    Column("wrapped", Text, nullable=False),
    Column("key_name", Text, nullable=False),
    Column("key_version", Integer, nullable=False),
    Column("created", Double, nullable=False),
    # Rotation finds the rows wrapped by an old version of a key.
    Index(None, "key_name", "key_version"),
)

#: The hash-chained audit trail (``blindstore.audit``): one row per S3 or admin action, denied
#: ones included. ``hash`` = SHA-256 over the previous record's hash and this record's canonical
#: encoding; ``seq`` is gap-free from 1, so a deleted, inserted or reordered record breaks it.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", Double, nullable=False),
    Column("request_id", Text, nullable=False),
    #: Access key id, ``admin`` or ``os:<user>`` (CLI jobs); empty when unauthenticated.
    Column("principal", Text, nullable=False),
    Column("tenant_id", LargeBinary(16), nullable=True),
    #: The S3 operation (``PutObject``...) or admin action (``admin.CreateTenant``...).
    Column("operation", Text, nullable=False),
    Column("bucket", ByteOrderedText, nullable=True),
    Column("key", ByteOrderedText, nullable=True),
    Column("object_id", LargeBinary(16), nullable=True),
    #: The object version: its ETag (the object id names the version's bytes).
    Column("version", Text, nullable=True),
    #: JSON list of the backends the action touched.
    Column("backends", Text, nullable=False),
    Column("key_name", Text, nullable=True),
    Column("key_version", Integer, nullable=True),
    #: HTTP status, and the S3 error code when it failed (``403 AccessDenied``).
    Column("result", Text, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("source", Text, nullable=False),
    #: JSON object of anything else worth keeping (never plaintext, keys or secrets).
    Column("detail", Text, nullable=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Index(None, "object_id"),
    Index(None, "tenant_id", "time"),
    Index(None, "principal", "time"),
)

#: Signed checkpoints of the audit chain: the hash at ``seq``, signed with a Transit ed25519 key.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("time", Double, nullable=False),
    Column("key_name", Text, nullable=False),
    Column("key_version", Integer, nullable=False),
    #: ``vault:vN:<base64>`` over the checkpoint's canonical bytes.
    Column("signature", Text, nullable=False),
    # Chained checkpoints (revision 0010); NULL prev_digest: an unchained v1 checkpoint.
    Column("prev_seq", BigInteger, nullable=True),
    Column("prev_digest", LargeBinary(32), nullable=True),
    #: ``checkpoint`` or ``discontinuity`` (the signer could not vouch for from_seq..seq).
    Column("kind", Text, nullable=False, server_default="checkpoint"),
    Column("from_seq", BigInteger, nullable=True),
)

#: Blobs of rows replaced or deleted, kept until ``not_before`` (epoch seconds) so that reads
#: already streaming them finish (``storage.delete_delay_seconds``). Recorded in the transaction
#: that removes the row, so a crash never leaks them; deleted by the gateway's background task
#: and ``blindstore gc``. Only opaque ids: no name, no key, nothing readable.
deferred_deletes = Table(
    "deferred_deletes",
    metadata,
    Column("backend", Text, primary_key=True),
    Column("container", Text, primary_key=True),
    Column("blob", Text, primary_key=True),
    Column("not_before", Double, nullable=False),
    Index(None, "not_before"),
)
