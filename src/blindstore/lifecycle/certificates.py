"""Crypto-shredding certificates: signed JSON statements of what was destroyed.

A certificate is a JSON object; its ``signature`` member holds an ed25519 signature made by an
OpenBao Transit signing key (``<prefix>sign``) over the certificate's *canonical bytes*: the
object without ``signature``, serialised with sorted keys, no whitespace and UTF-8 (RFC 8785's
rules for the values used here: strings, integers and lists). Anyone holding the signing key's
public key (``blindstore keys signing-key``) can verify it offline; Transit never needs to be
trusted for verification, only for signing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from blindstore.errors import BlindstoreError

CERTIFICATE_TYPE = "blindstore/crypto-shredding-certificate/v1"
_TRANSIT_SIGNATURE = re.compile(r"vault:v([1-9][0-9]{0,8}):([^:]*)")


class CertificateInvalid(BlindstoreError):
    """A certificate does not verify; the message says why."""

    expose_message = True


def canonical_bytes(certificate: Mapping[str, Any]) -> bytes:
    """The bytes the signature covers: everything but ``signature``, canonically encoded."""
    payload = {name: value for name, value in certificate.items() if name != "signature"}
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def attach_signature(
    certificate: Mapping[str, Any], *, key_name: str, key_version: int, signature: str
) -> dict[str, Any]:
    """The certificate with its ``signature`` member (``signature`` is Transit's form)."""
    return {
        **certificate,
        "signature": {
            "algorithm": "ed25519",
            "transit_key": key_name,
            "key_version": key_version,
            "value": signature,
        },
    }


def verify(
    certificate: Mapping[str, Any],
    public_keys: Mapping[int, bytes],
    *,
    expected_type: str = CERTIFICATE_TYPE,
) -> int:
    """Check the signature against the signing key's public keys (version → raw 32 bytes).

    ``expected_type`` is the document's ``type`` (other signed documents, such as an export's
    header, share this format). Returns the key version that verified; ``CertificateInvalid``
    says what is wrong.
    """
    if certificate.get("type") != expected_type:
        what = (
            "crypto-shredding certificate" if expected_type == CERTIFICATE_TYPE else expected_type
        )
        raise CertificateInvalid(f"not a blindstore {what}")
    signature = certificate.get("signature")
    if not isinstance(signature, dict) or signature.get("algorithm") != "ed25519":
        raise CertificateInvalid("the certificate carries no ed25519 signature")
    version = signature.get("key_version")
    named, raw = _signature_bytes(signature.get("value"))
    # bool is an int to Python (True == 1): "key_version": true must not pass for version 1.
    if not isinstance(version, int) or isinstance(version, bool) or version not in public_keys:
        raise CertificateInvalid(f"no public key for signing key version {version!r}")
    if named != version:
        # Neither is covered by the signature; they must at least agree with each other.
        raise CertificateInvalid(
            f"the signature names key version {named} but key_version says {version}"
        )
    try:
        Ed25519PublicKey.from_public_bytes(public_keys[version]).verify(
            raw, canonical_bytes(certificate)
        )
    except (InvalidSignature, ValueError) as exc:
        raise CertificateInvalid(
            "the signature does not match: the certificate was altered or signed by another key"
        ) from exc
    return version


def public_key_pem(raw: bytes) -> str:
    """A raw ed25519 public key as PEM (SubjectPublicKeyInfo), for publishing."""
    key = Ed25519PublicKey.from_public_bytes(raw)
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def public_key_from_pem(pem: bytes) -> bytes:
    """The raw 32 bytes of a PEM ed25519 public key; ``CertificateInvalid`` otherwise."""
    try:
        key = load_pem_public_key(pem)
    except ValueError as exc:
        raise CertificateInvalid("the public key file is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CertificateInvalid("the public key is not an ed25519 key")
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _signature_bytes(value: object) -> tuple[int, bytes]:
    """The key version N and the 64 raw bytes of a Transit signature ``vault:vN:<base64>``."""
    match = _TRANSIT_SIGNATURE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise CertificateInvalid("the signature is not of the form vault:vN:<base64>")
    try:
        raw = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CertificateInvalid("the signature is not valid base64") from exc
    if len(raw) != 64:
        raise CertificateInvalid("an ed25519 signature is 64 bytes")
    return int(match.group(1)), raw
