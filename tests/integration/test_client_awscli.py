"""The AWS CLI (v1, from PyPI) against the gateway: `aws s3` high-level commands and `aws s3api`.

The CLI runs as a subprocess with its configuration isolated (empty config and credentials files,
keys in the environment). Over plain http botocore signs the payload (``x-amz-content-sha256`` is
the body's SHA-256, not ``UNSIGNED-PAYLOAD`` or aws-chunked) and, by default, adds a CRC32
``x-amz-checksum-crc32`` header; multipart uploads declare CRC32 and send it with every part.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from awscrt import checksums as crt

from tests.gwserver import RunningGateway

pytestmark = pytest.mark.integration

AWS = Path(sys.executable).parent / "aws"
MIB = 1024 * 1024


@dataclass
class AwsCli:
    endpoint: str
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(AWS), "--endpoint-url", self.endpoint, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"aws {' '.join(args)} exited {result.returncode}:\n{result.stderr}{result.stdout}"
            )
        return result

    def s3(self, *args: str, **kwargs: Any) -> str:
        """`aws s3 ...` (transfers without progress output); returns stdout."""
        quiet = ("--no-progress",) if args[0] in ("cp", "mv", "sync") else ()
        return self.run("s3", *args, *quiet, **kwargs).stdout

    def api(self, *args: str, **kwargs: Any) -> Any:
        """`aws s3api ...`; returns the parsed JSON output (None when there is none)."""
        out = self.run("s3api", *args, "--output", "json", **kwargs).stdout
        return json.loads(out) if out.strip() else None


@pytest.fixture(scope="module")
def aws(gw: RunningGateway, tmp_path_factory: pytest.TempPathFactory) -> AwsCli:
    home = tmp_path_factory.mktemp("awshome")
    (home / "config").write_text("")
    (home / "credentials").write_text("")
    creds = gw.tenants["demo"]
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        HOME=str(home),
        AWS_ACCESS_KEY_ID=creds.access_key,
        AWS_SECRET_ACCESS_KEY=creds.secret_key,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )
    return AwsCli(gw.endpoint, env)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def crc32(data: bytes) -> str:
    return b64(zlib.crc32(data).to_bytes(4, "big"))


def write_tree(root: Path) -> dict[str, bytes]:
    files = {
        "top.txt": b"top level\n",
        "a/one.txt": b"one\n" * 100,
        "a/b/two.bin": secrets.token_bytes(70_000),
        "a/b/c/deep.json": b'{"deep": true}\n',
        "z/empty.txt": b"",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def transferred(output: str, verb: str) -> list[str]:
    """The destinations of `upload: X to Y` (or download/delete) lines of `aws s3` output."""
    return sorted(
        line.split(" to ", 1)[-1] for line in output.splitlines() if line.startswith(verb)
    )


def test_mb_lists_the_bucket_and_rb_removes_it(aws: AwsCli, s3: Any) -> None:
    name = f"cli-{secrets.token_hex(6)}"
    assert aws.s3("mb", f"s3://{name}").strip() == f"make_bucket: {name}"
    listed = aws.s3("ls").splitlines()
    assert any(line.split()[-1] == name for line in listed)
    s3.head_bucket(Bucket=name)
    assert aws.s3("rb", f"s3://{name}").strip() == f"remove_bucket: {name}"
    assert all(line.split()[-1] != name for line in aws.s3("ls").splitlines())


def test_rb_of_a_non_empty_bucket_fails_until_forced(aws: AwsCli, s3: Any) -> None:
    name = f"cli-{secrets.token_hex(6)}"
    aws.s3("mb", f"s3://{name}")
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    failed = aws.run("s3", "rb", f"s3://{name}", check=False)
    assert failed.returncode != 0
    assert "BucketNotEmpty" in failed.stderr
    aws.s3("rb", "--force", f"s3://{name}")
    assert name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_cp_small_file_up_and_down_is_byte_identical(
    aws: AwsCli, s3: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "note.txt"
    src.write_bytes(b"patient 42: all clear\n")
    out = aws.s3("cp", str(src), f"s3://{bucket}/notes/note.txt")
    assert transferred(out, "upload:") == [f"s3://{bucket}/notes/note.txt"]
    head = s3.head_object(Bucket=bucket, Key="notes/note.txt")
    assert head["ETag"] == f'"{hashlib.md5(src.read_bytes()).hexdigest()}"'
    assert head["ContentType"] == "text/plain"
    dst = tmp_path / "back.txt"
    aws.s3("cp", f"s3://{bucket}/notes/note.txt", str(dst))
    assert dst.read_bytes() == src.read_bytes()


def test_cp_of_a_20_mib_file_goes_multipart_and_round_trips(
    aws: AwsCli, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data = secrets.token_bytes(20 * MIB)
    src = tmp_path / "scan.bin"
    src.write_bytes(data)
    aws.s3("cp", str(src), f"s3://{bucket}/scan.bin")
    head = s3.head_object(Bucket=bucket, Key="scan.bin", ChecksumMode="ENABLED")
    # 8 MiB default chunks: 8 + 8 + 4.
    assert head["ETag"].endswith('-3"')
    assert head["ContentLength"] == len(data)
    dst = tmp_path / "scan.out"
    aws.s3("cp", f"s3://{bucket}/scan.bin", str(dst))
    assert dst.read_bytes() == data
    part = s3.get_object(Bucket=bucket, Key="scan.bin", PartNumber=3)
    assert part["Body"].read() == data[16 * MIB :]


def test_ls_recursive_lists_every_key_and_plain_ls_shows_prefixes(
    aws: AwsCli, bucket: str, tmp_path: Path
) -> None:
    files = write_tree(tmp_path / "tree")
    aws.s3("cp", "--recursive", str(tmp_path / "tree"), f"s3://{bucket}/t/")
    rows = [line.split() for line in aws.s3("ls", "--recursive", f"s3://{bucket}").splitlines()]
    assert {row[3]: int(row[2]) for row in rows} == {f"t/{k}": len(v) for k, v in files.items()}
    top = aws.s3("ls", f"s3://{bucket}/t/").splitlines()
    assert sorted(line.split()[-1] for line in top) == ["a/", "top.txt", "z/"]
    assert sum(line.strip().startswith("PRE ") for line in top) == 2


def test_sync_uploads_the_tree_then_nothing_then_only_the_changed_file(
    aws: AwsCli, bucket: str, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    files = write_tree(root)
    target = f"s3://{bucket}/sync"
    first = aws.s3("sync", str(root), target)
    assert transferred(first, "upload:") == sorted(f"{target}/{k}" for k in files)
    assert transferred(aws.s3("sync", str(root), target), "upload:") == []
    (root / "a/one.txt").write_bytes(b"one changed, and longer than before\n")
    third = aws.s3("sync", str(root), target)
    assert transferred(third, "upload:") == [f"{target}/a/one.txt"]
    back = tmp_path / "back"
    down = aws.s3("sync", target, str(back))
    assert len(transferred(down, "download:")) == len(files)
    for name in files:
        assert (back / name).read_bytes() == (root / name).read_bytes(), name


def test_sync_delete_removes_keys_missing_locally(
    aws: AwsCli, s3: Any, bucket: str, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    files = write_tree(root)
    aws.s3("sync", str(root), f"s3://{bucket}")
    (root / "top.txt").unlink()
    out = aws.s3("sync", "--delete", str(root), f"s3://{bucket}")
    assert [line for line in out.splitlines() if line.startswith("delete:")] == [
        f"delete: s3://{bucket}/top.txt"
    ]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == set(files) - {"top.txt"}


def test_rm_removes_one_key_and_recursive_rm_removes_a_prefix(
    aws: AwsCli, s3: Any, bucket: str, tmp_path: Path
) -> None:
    files = write_tree(tmp_path / "tree")
    aws.s3("cp", "--recursive", str(tmp_path / "tree"), f"s3://{bucket}/")
    out = aws.s3("rm", f"s3://{bucket}/top.txt")
    assert out.strip() == f"delete: s3://{bucket}/top.txt"
    out = aws.s3("rm", "--recursive", f"s3://{bucket}/a/")
    deleted = sorted(line.removeprefix("delete: ") for line in out.splitlines())
    assert deleted == sorted(f"s3://{bucket}/{k}" for k in files if k.startswith("a/"))
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {"z/empty.txt"}


def test_s3api_put_head_get_round_trip_with_metadata(
    aws: AwsCli, bucket: str, tmp_path: Path
) -> None:
    data = secrets.token_bytes(100_000)
    src = tmp_path / "body.bin"
    src.write_bytes(data)
    put = aws.api(
        "put-object", "--bucket", bucket, "--key", "dir/obj.bin", "--body", str(src),
        "--content-type", "application/dicom", "--metadata", "patient=p-17,study=ct",
        "--tagging", "phi=yes&ward=4",
    )  # fmt: skip
    md5 = hashlib.md5(data).hexdigest()
    assert put["ETag"] == f'"{md5}"'
    assert put["ChecksumCRC32"] == crc32(data)
    head = aws.api("head-object", "--bucket", bucket, "--key", "dir/obj.bin")
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "application/dicom"
    assert head["Metadata"] == {"patient": "p-17", "study": "ct"}
    assert head["ETag"] == f'"{md5}"'
    out = tmp_path / "out.bin"
    got = aws.api("get-object", "--bucket", bucket, "--key", "dir/obj.bin", str(out))
    assert out.read_bytes() == data
    assert got["ContentLength"] == len(data)
    assert got["TagCount"] == 2
    tagging = aws.api("get-object-tagging", "--bucket", bucket, "--key", "dir/obj.bin")
    assert sorted((t["Key"], t["Value"]) for t in tagging["TagSet"]) == [
        ("phi", "yes"),
        ("ward", "4"),
    ]


def test_s3api_get_object_with_range(aws: AwsCli, bucket: str, tmp_path: Path) -> None:
    data = secrets.token_bytes(200_000)
    src = tmp_path / "body.bin"
    src.write_bytes(data)
    aws.api("put-object", "--bucket", bucket, "--key", "r", "--body", str(src))
    out = tmp_path / "part"
    got = aws.api(
        "get-object", "--bucket", bucket, "--key", "r", "--range", "bytes=65530-70000", str(out)
    )
    assert out.read_bytes() == data[65530:70001]
    assert got["ContentRange"] == f"bytes 65530-70000/{len(data)}"


def test_s3api_list_objects_v2_and_delete_objects(aws: AwsCli, s3: Any, bucket: str) -> None:
    keys = [f"logs/{i:02d}.txt" for i in range(5)] + ["other/keep.txt"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    listed = aws.api("list-objects-v2", "--bucket", bucket, "--prefix", "logs/")
    assert [o["Key"] for o in listed["Contents"]] == keys[:5]
    single = aws.api("list-objects-v2", "--bucket", bucket, "--prefix", "logs/", "--no-paginate")
    assert single["KeyCount"] == 5
    delimited = aws.api("list-objects-v2", "--bucket", bucket, "--delimiter", "/")
    assert [p["Prefix"] for p in delimited["CommonPrefixes"]] == ["logs/", "other/"]
    # --page-size 2: the CLI follows three continuation tokens and merges the pages.
    paged = aws.api("list-objects-v2", "--bucket", bucket, "--page-size", "2")
    assert [o["Key"] for o in paged["Contents"]] == sorted(keys)
    request = {"Objects": [{"Key": k} for k in keys[:5]] + [{"Key": "never-existed"}]}
    deleted = aws.api("delete-objects", "--bucket", bucket, "--delete", json.dumps(request))
    assert sorted(d["Key"] for d in deleted["Deleted"]) == sorted([*keys[:5], "never-existed"])
    assert "Errors" not in deleted
    rest = aws.api("list-objects-v2", "--bucket", bucket)
    assert [o["Key"] for o in rest["Contents"]] == ["other/keep.txt"]


def test_s3api_multipart_upload_by_hand(aws: AwsCli, s3: Any, bucket: str, tmp_path: Path) -> None:
    first = secrets.token_bytes(5 * MIB)
    second = secrets.token_bytes(1234)
    (tmp_path / "p1").write_bytes(first)
    (tmp_path / "p2").write_bytes(second)
    created = aws.api("create-multipart-upload", "--bucket", bucket, "--key", "mp.bin")
    upload_id = created["UploadId"]
    etags = []
    for number, name in ((1, "p1"), (2, "p2")):
        part = aws.api(
            "upload-part", "--bucket", bucket, "--key", "mp.bin", "--upload-id", upload_id,
            "--part-number", str(number), "--body", str(tmp_path / name),
        )  # fmt: skip
        etags.append(part["ETag"])
    assert etags == [
        f'"{hashlib.md5(first).hexdigest()}"',
        f'"{hashlib.md5(second).hexdigest()}"',
    ]
    parts = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]}
    done = aws.api(
        "complete-multipart-upload", "--bucket", bucket, "--key", "mp.bin",
        "--upload-id", upload_id, "--multipart-upload", json.dumps(parts),
    )  # fmt: skip
    joined = b"".join(bytes.fromhex(e.strip('"')) for e in etags)
    assert done["ETag"] == f'"{hashlib.md5(joined).hexdigest()}-2"'
    out = tmp_path / "out"
    aws.api("get-object", "--bucket", bucket, "--key", "mp.bin", str(out))
    assert out.read_bytes() == first + second
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def _sent_headers(debug_log: str, method: str) -> dict[str, str]:
    """Headers of the first `method` request in an `aws --debug` log."""
    for line in debug_log.splitlines():
        if "Sending http request: <AWSPreparedRequest" in line and f"method={method}" in line:
            found = re.findall(r"'([A-Za-z0-9-]+)': b?'([^']*)'", line.split("headers=", 1)[1])
            return {k.lower(): v for k, v in found}
    raise AssertionError(f"no {method} request in the debug log")


def test_cli_signs_the_payload_and_sends_a_crc32_header_by_default(
    aws: AwsCli, bucket: str, tmp_path: Path
) -> None:
    data = b"signed payload with a crc32 header\n"
    src = tmp_path / "f"
    src.write_bytes(data)
    result = aws.run(
        "s3api", "put-object", "--bucket", bucket, "--key", "k", "--body", str(src), "--debug"
    )
    sent = _sent_headers(result.stderr, "PUT")
    assert sent["x-amz-content-sha256"] == hashlib.sha256(data).hexdigest()
    assert sent["x-amz-checksum-crc32"] == crc32(data)
    assert "content-encoding" not in sent
    assert json.loads(result.stdout)["ChecksumCRC32"] == crc32(data)


def test_cli_without_checksum_calculation_sends_no_checksum_and_is_accepted(
    aws: AwsCli, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data = secrets.token_bytes(9 * MIB)
    src = tmp_path / "f"
    src.write_bytes(data)
    env = {"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"}
    result = aws.run("s3api", "put-object", "--bucket", bucket, "--key", "k", "--body", str(src),
                     "--debug", env=env)  # fmt: skip
    sent = _sent_headers(result.stderr, "PUT")
    assert not any(h.startswith("x-amz-checksum-") for h in sent)
    assert sent["x-amz-content-sha256"] == hashlib.sha256(data).hexdigest()
    aws.s3("cp", str(src), f"s3://{bucket}/mp", env=env)
    assert s3.head_object(Bucket=bucket, Key="mp")["ETag"].endswith('-2"')
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == data


@pytest.mark.parametrize(
    ("algorithm", "field", "expected"),
    [
        ("SHA256", "ChecksumSHA256", lambda d: b64(hashlib.sha256(d).digest())),
        ("SHA1", "ChecksumSHA1", lambda d: b64(hashlib.sha1(d).digest())),
        ("CRC32C", "ChecksumCRC32C", lambda d: b64(crt.crc32c(d).to_bytes(4, "big"))),
    ],
)
def test_cli_put_with_another_checksum_algorithm_is_verified_and_stored(
    aws: AwsCli, s3: Any, bucket: str, tmp_path: Path, algorithm: str, field: str, expected: Any
) -> None:
    data = secrets.token_bytes(4096)
    src = tmp_path / "f"
    src.write_bytes(data)
    put = aws.api("put-object", "--bucket", bucket, "--key", "k", "--body", str(src),
                  "--checksum-algorithm", algorithm)  # fmt: skip
    assert put[field] == expected(data)
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head[field] == expected(data)


def test_cli_put_with_a_wrong_checksum_is_rejected_with_bad_digest(
    aws: AwsCli, s3: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"the real body")
    failed = aws.run("s3api", "put-object", "--bucket", bucket, "--key", "k", "--body", str(src),
                     "--checksum-crc32", crc32(b"another body"), check=False)  # fmt: skip
    assert failed.returncode != 0
    assert "(BadDigest)" in failed.stderr
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_cp_and_mv_between_keys_copy_on_the_server(aws: AwsCli, s3: Any, bucket: str) -> None:
    data = secrets.token_bytes(50_000)
    s3.put_object(Bucket=bucket, Key="src.bin", Body=data, Metadata={"origin": "scanner"})
    aws.s3("cp", f"s3://{bucket}/src.bin", f"s3://{bucket}/copy.bin")
    aws.s3("mv", f"s3://{bucket}/src.bin", f"s3://{bucket}/moved/src.bin")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["copy.bin", "moved/src.bin"]
    for key in keys:
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == data
        assert got["Metadata"] == {"origin": "scanner"}


def test_presigned_url_from_the_cli_downloads_and_rejects_tampering(
    aws: AwsCli, s3: Any, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="report.pdf", Body=b"%PDF-1.7 report")
    s3.put_object(Bucket=bucket, Key="other.pdf", Body=b"%PDF-1.7 other")
    config = tmp_path / "config"
    config.write_text("[default]\ns3 =\n    signature_version = s3v4\n")
    url = aws.s3("presign", f"s3://{bucket}/report.pdf", "--expires-in", "300",
                 env={"AWS_CONFIG_FILE": str(config)}).strip()  # fmt: skip
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"%PDF-1.7 report"
    tampered = url.replace("/report.pdf?", "/other.pdf?")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(tampered, timeout=10)
    assert caught.value.code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in caught.value.read()


def test_signature_v2_presigned_url_is_refused_with_a_pointer_to_sigv4(
    aws: AwsCli, s3: Any, bucket: str
) -> None:
    """The CLI v1 presigns with Signature Version 2 unless told otherwise."""
    s3.put_object(Bucket=bucket, Key="report.pdf", Body=b"%PDF-1.7 report")
    url = aws.s3("presign", f"s3://{bucket}/report.pdf").strip()
    assert "AWSAccessKeyId=" in url
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url, timeout=10)
    assert caught.value.code == 400
    body = caught.value.read()
    assert b"<Code>InvalidRequest</Code>" in body
    assert b"AWS4-HMAC-SHA256" in body
