"""Conversion between catalog records and table rows (pure: no database access).

Rows are read positionally, in the column order of ``schema`` (which ``select(table)`` returns);
the ``*_values`` functions list the columns in that same order, and a unit test pins both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from blindstore.catalog.base import (
    AccessKey,
    Bucket,
    BucketKey,
    ObjectRecord,
    StoredPart,
    Tenant,
    Upload,
    UploadPart,
)

_EMPTY_JSON_OBJECT = "{}"
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_decode = json.JSONDecoder().decode


def encode_dict(values: dict[str, str]) -> str:
    """JSON text of a str → str dict (most are empty: that case skips the encoder)."""
    return _encoder.encode(values) if values else _EMPTY_JSON_OBJECT


def decode_dict(text: str) -> dict[str, str]:
    """Inverse of ``encode_dict``."""
    if text == _EMPTY_JSON_OBJECT:
        return {}
    decoded: dict[str, str] = _decode(text)
    return decoded


def encode_parts(parts: Sequence[StoredPart]) -> str:
    """JSON text of a part manifest, one compact array per part."""
    return _encoder.encode([[p.part_number, p.blob, p.size, p.stored_size, p.etag] for p in parts])


def decode_parts(text: str) -> tuple[StoredPart, ...]:
    """Inverse of ``encode_parts``."""
    return tuple(
        StoredPart(n, blob, size, stored, etag) for n, blob, size, stored, etag in _decode(text)
    )


def encode_names(names: Sequence[str]) -> str:
    """JSON text of a list of backend names."""
    return _encoder.encode(list(names))


def decode_names(text: str) -> tuple[str, ...]:
    """Inverse of ``encode_names``."""
    return tuple(_decode(text))


def tenant_values(tenant: Tenant) -> dict[str, Any]:
    """Column values of a tenant row."""
    return {
        "tenant_id": tenant.tenant_id,
        "name": tenant.name,
        "key_name": tenant.key_name,
        "container": tenant.container,
        "created": tenant.created,
        "shredded": tenant.shredded,
    }


def tenant_from_row(row: Sequence[Any]) -> Tenant:
    """A tenant from its row."""
    tenant_id, name, key_name, container, created, shredded = row
    return Tenant(tenant_id, name, key_name, container, created, shredded)


def access_key_values(key: AccessKey) -> dict[str, Any]:
    """Column values of an access key row."""
    return {
        "access_key_id": key.access_key_id,
        "secret_key": key.secret_key,
        "tenant_id": key.tenant_id,
        "created": key.created,
        "sealed_secret": key.sealed_secret,
    }


def access_key_from_row(row: Sequence[Any]) -> AccessKey:
    """An access key from its row (an emptied clear secret reads as None)."""
    access_key_id, secret_key, tenant_id, created, sealed_secret = row
    return AccessKey(access_key_id, sealed_secret, tenant_id, created, secret_key or None)


def bucket_values(bucket: Bucket) -> dict[str, Any]:
    """Column values of a bucket row."""
    return {
        "name": bucket.name,
        "tenant_id": bucket.tenant_id,
        "created": bucket.created,
        "region": bucket.region,
    }


def bucket_from_row(row: Sequence[Any]) -> Bucket:
    """A bucket from its row."""
    name, tenant_id, created, region = row
    return Bucket(name, tenant_id, created, region)


def object_values(record: ObjectRecord) -> dict[str, Any]:
    """Column values of an object row."""
    return {
        "bucket": record.bucket,
        "key": record.key,
        "tenant_id": record.tenant_id,
        "object_id": record.object_id,
        "backends": encode_names(record.backends),
        "container": record.container,
        "parts": encode_parts(record.parts),
        "size": record.size,
        "etag": record.etag,
        "last_modified": record.last_modified,
        "wrapped_dek": record.wrapped_dek,
        "key_name": record.key_name,
        "key_version": record.key_version,
        "headers": encode_dict(record.headers),
        "user_metadata": encode_dict(record.user_metadata),
        "checksums": encode_dict(record.checksums),
        "tags": encode_dict(record.tags),
        "row_mac": record.row_mac,
        "repairs": encode_names(record.repairs),
        "provenance": encode_dict(record.provenance),
        "retention_until": record.retention_until,
        "quarantined": record.quarantined,
    }


def object_from_row(row: Sequence[Any]) -> ObjectRecord:
    """An object record from its row."""
    (
        bucket,
        key,
        tenant_id,
        object_id,
        backends,
        container,
        parts,
        size,
        etag,
        last_modified,
        wrapped_dek,
        key_name,
        key_version,
        headers,
        user_metadata,
        checksums,
        tags,
        row_mac,
        repairs,
        provenance,
        retention_until,
        quarantined,
    ) = row
    return ObjectRecord(
        bucket,
        key,
        tenant_id,
        object_id,
        decode_names(backends),
        container,
        decode_parts(parts),
        size,
        etag,
        last_modified,
        wrapped_dek,
        key_name,
        key_version,
        decode_dict(headers),
        decode_dict(user_metadata),
        decode_dict(checksums),
        decode_dict(tags),
        row_mac,
        decode_names(repairs),
        decode_dict(provenance),
        retention_until,
        quarantined,
    )


def upload_values(upload: Upload) -> dict[str, Any]:
    """Column values of an upload row."""
    return {
        "upload_id": upload.upload_id,
        "bucket": upload.bucket,
        "key": upload.key,
        "tenant_id": upload.tenant_id,
        "object_id": upload.object_id,
        "backends": encode_names(upload.backends),
        "container": upload.container,
        "wrapped_dek": upload.wrapped_dek,
        "key_name": upload.key_name,
        "key_version": upload.key_version,
        "initiated": upload.initiated,
        "headers": encode_dict(upload.headers),
        "user_metadata": encode_dict(upload.user_metadata),
        "tags": encode_dict(upload.tags),
        "checksum_algorithm": upload.checksum_algorithm,
        "quorum": upload.quorum,
        "provenance": encode_dict(upload.provenance),
        "retention_until": upload.retention_until,
        "row_mac": upload.row_mac or None,
    }


def upload_from_row(row: Sequence[Any]) -> Upload:
    """An upload from its row."""
    (
        upload_id,
        bucket,
        key,
        tenant_id,
        object_id,
        backends,
        container,
        wrapped_dek,
        key_name,
        key_version,
        initiated,
        headers,
        user_metadata,
        tags,
        checksum_algorithm,
        quorum,
        provenance,
        retention_until,
        row_mac,
    ) = row
    return Upload(
        upload_id,
        bucket,
        key,
        tenant_id,
        object_id,
        decode_names(backends),
        container,
        wrapped_dek,
        key_name,
        key_version,
        initiated,
        decode_dict(headers),
        decode_dict(user_metadata),
        decode_dict(tags),
        checksum_algorithm,
        quorum,
        decode_dict(provenance),
        retention_until,
        row_mac or b"",
    )


def part_values(part: UploadPart) -> dict[str, Any]:
    """Column values of an upload part row."""
    return {
        "upload_id": part.upload_id,
        "part_number": part.part_number,
        "blob": part.blob,
        "size": part.size,
        "stored_size": part.stored_size,
        "etag": part.etag,
        "last_modified": part.last_modified,
        "checksums": encode_dict(part.checksums),
        "backends": encode_names(part.backends),
        "row_mac": part.row_mac or None,
    }


def part_from_row(row: Sequence[Any]) -> UploadPart:
    """An upload part from its row."""
    (
        upload_id,
        part_number,
        blob,
        size,
        stored_size,
        etag,
        last_modified,
        checksums,
        backends,
        row_mac,
    ) = row
    return UploadPart(
        upload_id,
        part_number,
        blob,
        size,
        stored_size,
        etag,
        last_modified,
        decode_dict(checksums),
        decode_names(backends),
        row_mac or b"",
    )


def bucket_key_values(key: BucketKey) -> dict[str, Any]:
    """Column values of a bucket key row."""
    return {
        "bucket_key_id": key.bucket_key_id,
        "tenant_id": key.tenant_id,
        "bucket": key.bucket,
        "wrapped": key.wrapped,
        "key_name": key.key_name,
        "key_version": key.key_version,
        "created": key.created,
    }


def bucket_key_from_row(row: Sequence[Any]) -> BucketKey:
    """A bucket key from its row."""
    bucket_key_id, tenant_id, bucket, wrapped, key_name, key_version, created = row
    return BucketKey(bucket_key_id, tenant_id, bucket, wrapped, key_name, key_version, created)
