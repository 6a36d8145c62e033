"""Row encoding of catalog records: JSON fields and part manifests survive the round trip."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Table

from blindstore.catalog.base import AccessKey, Bucket, BucketKey, StoredPart
from blindstore.catalog.records import (
    access_key_from_row,
    access_key_values,
    bucket_from_row,
    bucket_key_from_row,
    bucket_key_values,
    bucket_values,
    decode_dict,
    decode_parts,
    encode_dict,
    encode_parts,
    object_from_row,
    object_values,
    part_from_row,
    part_values,
    tenant_from_row,
    tenant_values,
    upload_from_row,
    upload_values,
)
from blindstore.catalog.schema import (
    access_keys,
    bucket_keys,
    buckets,
    objects,
    tenants,
    upload_parts,
    uploads,
)
from tests.contract.catalog_contract import TENANT, make_object, make_part, make_upload

_text = st.text(max_size=20)
_parts = st.lists(
    st.builds(
        StoredPart,
        part_number=st.integers(0, 10_000),
        blob=_text,
        size=st.integers(0, 5 << 40),
        stored_size=st.integers(0, 6 << 40),
        etag=_text,
    ),
    max_size=5,
)


@given(st.dictionaries(_text, _text, max_size=5))
def test_dicts_round_trip(values: dict[str, str]) -> None:
    assert decode_dict(encode_dict(values)) == values


@given(_parts)
def test_part_manifests_round_trip(parts: list[StoredPart]) -> None:
    assert decode_parts(encode_parts(parts)) == tuple(parts)


def test_encodings_are_compact_and_keep_unicode_readable() -> None:
    assert encode_dict({}) == "{}"
    assert encode_dict({"patient": "Zoë"}) == '{"patient":"Zoë"}'
    assert encode_parts([StoredPart(1, "ab/cd", 3, 59, "e")]) == '[[1,"ab/cd",3,59,"e"]]'


@pytest.mark.parametrize(
    ("table", "record", "to_values", "from_row"),
    [
        (tenants, TENANT, tenant_values, tenant_from_row),
        (
            access_keys,
            AccessKey("AKIA", "secret", TENANT.tenant_id, 1.0),
            access_key_values,
            access_key_from_row,
        ),
        (buckets, Bucket("photos", TENANT.tenant_id, 2.0), bucket_values, bucket_from_row),
        (
            objects,
            dataclasses.replace(
                make_object("photos", "k"),
                tags={"t": "1"},
                row_mac=b"mac",
                provenance={"origin": "PACS-1"},
                retention_until=2e9,
            ),
            object_values,
            object_from_row,
        ),
        (
            uploads,
            dataclasses.replace(
                make_upload("photos", "k", "u1"),
                checksum_algorithm="crc32",
                provenance={"consent": "C-9"},
                retention_until=2e9,
            ),
            upload_values,
            upload_from_row,
        ),
        (upload_parts, make_part("u1", 3), part_values, part_from_row),
        (
            bucket_keys,
            BucketKey(b"k" * 16, TENANT.tenant_id, "photos", "vault:v1:AAAA", "hgw-t", 1, 3.0),
            bucket_key_values,
            bucket_key_from_row,
        ),
    ],
)
def test_rows_follow_the_column_order_of_the_schema(
    table: Table, record: object, to_values: Any, from_row: Any
) -> None:
    values = to_values(record)

    assert list(values) == [column.name for column in table.columns]
    assert from_row(tuple(values.values())) == record
