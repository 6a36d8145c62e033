"""Audit fields copied from requests are bounded, identifiably."""

from __future__ import annotations

import hashlib

from blindstore.audit.bounded import MAX_KEY_BYTES, bounded


def test_a_value_within_the_limit_is_kept_whole() -> None:
    key = "é" * 512
    assert bounded(key, MAX_KEY_BYTES) == key


def test_a_longer_value_is_cut_with_its_length_and_digest() -> None:
    key = "a/" + "k" * 5000
    cut = bounded(key, MAX_KEY_BYTES)
    assert cut is not None
    assert len(cut.encode()) < 300
    assert cut.startswith(key[:128])
    assert f"5002 bytes, sha256 {hashlib.sha256(key.encode()).hexdigest()}" in cut


def test_a_cut_never_splits_a_character() -> None:
    cut = bounded("€" * 1000, 100)
    assert cut is not None
    assert cut.startswith("€" * 42 + "…[")


def test_none_stays_none() -> None:
    assert bounded(None, 10) is None
