from __future__ import annotations

from typing import Any


def test_put_then_get_returns_the_same_bytes(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello world")
    got = s3.get_object(Bucket=bucket, Key="hello.txt")
    assert got["Body"].read() == b"hello world"
