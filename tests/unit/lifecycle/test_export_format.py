"""The export format on its own (no OpenBao): file names no key can steer, ASCII manifest lines,
and a verifier that refuses a signed manifest naming paths outside objects/, a certificate
passed off as an export, or a journal torn mid-line."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from blindstore.lifecycle.certificates import CERTIFICATE_TYPE, attach_signature, canonical_bytes
from blindstore.lifecycle.export import (
    EXPORT_TYPE,
    _read_journal,
    dumps_line,
    object_file,
)
from blindstore.lifecycle.exportcheck import ExportInvalid, verify_export

KEY = Ed25519PrivateKey.generate()
PUBLIC = {1: KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}


@pytest.mark.parametrize("key", ["../../etc/passwd", "/abs", "a\x00b\x01\n", "k" * 1024, "é"])
def test_object_files_are_digest_names_whatever_the_key(key: str) -> None:
    name = object_file("bucket", key)
    prefix, _, leaf = name.partition("/")
    assert prefix == "objects"
    assert len(leaf) == 64
    assert set(leaf) <= set("0123456789abcdef")


def test_manifest_lines_are_ascii_and_round_trip_hostile_keys() -> None:
    entry = {"bucket": "b", "key": "é\x01\u2028../x", "status": "shredded"}
    line = dumps_line(entry)
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert line.isascii()
    assert json.loads(line) == entry


def _signed_export(root: Path, lines: list[dict[str, Any]], **header: Any) -> None:
    (root / "objects").mkdir(parents=True)
    manifest = "".join(dumps_line(line) for line in lines).encode()
    (root / "manifest.jsonl").write_bytes(manifest)
    document = {
        "type": EXPORT_TYPE,
        "objects": sum(1 for line in lines if line["status"] == "exported"),
        "shredded": sum(1 for line in lines if line["status"] == "shredded"),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        **header,
    }
    signature = KEY.sign(canonical_bytes(document))
    signed = attach_signature(
        document,
        key_name="hgw-sign",
        key_version=1,
        signature="vault:v1:" + base64.b64encode(signature).decode(),
    )
    (root / "export.json").write_text(json.dumps(signed))


def _exported(file: str, data: bytes) -> dict[str, Any]:
    return {
        "bucket": "b",
        "key": "k",
        "status": "exported",
        "file": file,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_a_signed_export_verifies(tmp_path: Path) -> None:
    data = b"plaintext"
    name = object_file("b", "k")
    _signed_export(tmp_path, [_exported(name, data)])
    (tmp_path / name).write_bytes(data)
    assert verify_export(tmp_path, PUBLIC)["objects"] == 1


def test_a_manifest_naming_a_path_outside_objects_is_refused_even_if_signed(
    tmp_path: Path,
) -> None:
    (tmp_path / "secret").write_bytes(b"outside")
    _signed_export(tmp_path, [_exported("objects/../secret", b"outside")])
    with pytest.raises(ExportInvalid, match="outside objects/"):
        verify_export(tmp_path, PUBLIC)


def test_a_file_listed_twice_is_refused(tmp_path: Path) -> None:
    name = object_file("b", "k")
    (tmp_path / "objects").mkdir()
    _signed_export(tmp_path / "x", [_exported(name, b"a")] * 2)
    (tmp_path / "x" / name).write_bytes(b"a")
    with pytest.raises(ExportInvalid, match="twice"):
        verify_export(tmp_path / "x", PUBLIC)


def test_a_certificate_is_not_an_export(tmp_path: Path) -> None:
    _signed_export(tmp_path, [])
    header = json.loads((tmp_path / "export.json").read_text())
    header["type"] = CERTIFICATE_TYPE
    (tmp_path / "export.json").write_text(json.dumps(header))
    with pytest.raises(ExportInvalid, match="not a blindstore export header"):
        verify_export(tmp_path, PUBLIC)


def test_a_directory_without_header_is_not_a_finished_export(tmp_path: Path) -> None:
    with pytest.raises(ExportInvalid, match="not a finished export"):
        verify_export(tmp_path, PUBLIC)


def test_a_journal_torn_mid_line_keeps_its_complete_lines(tmp_path: Path) -> None:
    done = {"bucket": "b", "key": "k1", "status": "shredded"}
    (tmp_path / "journal.jsonl").write_text(
        dumps_line({"journal": 1, "tenant": "t", "bucket": None, "started": "x"})
        + dumps_line(done)
        + '{"bucket":"b","key":"k2","sta'
    )
    assert _read_journal(tmp_path) == {("b", "k1"): done}
