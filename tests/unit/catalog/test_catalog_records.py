"""Row encoding of catalog records: JSON fields and part manifests survive the round trip."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from blindstore.catalog.base import StoredPart
from blindstore.catalog.records import decode_dict, decode_parts, encode_dict, encode_parts

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
