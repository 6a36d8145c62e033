"""``blindstore export verify``: an export directory is exactly what its signed header says.

The header's signature (ed25519, Transit ``hgw-sign``, same format as the crypto-shredding
certificates) covers ``manifest_sha256``; the manifest gives every file's size and SHA-256; the
``objects/`` directory must hold those files and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from blindstore.lifecycle.certificates import CertificateInvalid, verify
from blindstore.lifecycle.export import EXPORT_TYPE, HEADER, MANIFEST, OBJECTS, file_sha256


class ExportInvalid(CertificateInvalid):
    """The export directory does not verify; the message says why."""


def read_header(dest: Path) -> dict[str, Any]:
    try:
        loaded = json.loads((dest / HEADER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportInvalid(f"cannot read {dest / HEADER}: not a finished export") from exc
    if not isinstance(loaded, dict):
        raise ExportInvalid(f"{HEADER} is not a JSON object")
    return loaded


def verify_export(dest: Path, public_keys: Mapping[int, bytes]) -> dict[str, Any]:
    """Check signature, manifest digest, every file and the absence of others; the summary."""
    header = read_header(dest)
    if header.get("type") != EXPORT_TYPE:
        raise ExportInvalid(f"{HEADER} is not a blindstore export header (type {EXPORT_TYPE})")
    try:
        version = verify(header, public_keys, expected_type=EXPORT_TYPE)
    except CertificateInvalid as exc:
        raise ExportInvalid(exc.message) from exc
    try:
        manifest = (dest / MANIFEST).read_bytes()
    except OSError as exc:
        raise ExportInvalid(f"{MANIFEST} is missing") from exc
    if hashlib.sha256(manifest).hexdigest() != header.get("manifest_sha256"):
        raise ExportInvalid(f"{MANIFEST} does not match the signed digest: it was altered")
    expected: dict[str, tuple[int, str]] = {}
    shredded = 0
    for number, line in enumerate(manifest.decode("utf-8", "replace").splitlines(), start=1):
        try:
            entry = json.loads(line)
            if entry["status"] == "shredded":
                shredded += 1
                continue
            name, size, sha256 = str(entry["file"]), int(entry["size"]), str(entry["sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ExportInvalid(f"manifest line {number} is not a manifest entry") from exc
        prefix = f"{OBJECTS}/"
        if not name.startswith(prefix) or "/" in name[len(prefix) :] or name in expected:
            raise ExportInvalid(f"manifest line {number} names a file outside {OBJECTS}/ or twice")
        expected[name] = (size, sha256)
    present = {f"{OBJECTS}/{path.name}" for path in (dest / OBJECTS).iterdir()}
    missing = sorted(set(expected) - present)
    if missing:
        raise ExportInvalid(f"{len(missing)} file(s) missing, first: {missing[0]}")
    extra = sorted(present - set(expected))
    if extra:
        raise ExportInvalid(f"{len(extra)} file(s) not in the manifest, first: {extra[0]}")
    for name, (size, sha256) in sorted(expected.items()):
        if file_sha256(dest / name) != (size, sha256):
            raise ExportInvalid(f"{name} does not match its size and SHA-256 in the manifest")
    if (header.get("objects"), header.get("shredded")) != (len(expected), shredded):
        raise ExportInvalid("the manifest's counts differ from the signed header's")
    return {
        "valid": True,
        "tenant": header.get("tenant"),
        "objects": len(expected),
        "shredded": shredded,
        "bytes": header.get("bytes"),
        "signing_key_version": version,
    }
