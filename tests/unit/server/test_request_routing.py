"""Request parsing and routing of the S3 plane (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from blindstore.errors import (
    MethodNotAllowed,
    NotImplementedOperation,
    RequestHeaderSectionTooLarge,
)
from blindstore.server import handlers
from blindstore.server.request import parse_scope
from blindstore.server.s3app import route

DOMAINS = ("localhost", "s3.example.org")


def scope(
    method: str,
    path: str,
    query: bytes = b"",
    host: str = "127.0.0.1:9000",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(b"host", host.encode()), *(headers or [])],
        "client": ("127.0.0.1", 5000),
    }


def test_path_style_request_splits_bucket_and_percent_decoded_key() -> None:
    req = parse_scope(
        scope("GET", "/bucket/a%20b/..%2Fc"), virtual_host_domains=DOMAINS, max_header_bytes=8192
    )
    assert (req.bucket, req.key) == ("bucket", "a b/../c")
    assert req.raw_path == "/bucket/a%20b/..%2Fc"


def test_virtual_hosted_request_takes_the_bucket_from_the_host() -> None:
    req = parse_scope(
        scope("GET", "/dir/key", host="my-bucket.s3.example.org:9000"),
        virtual_host_domains=DOMAINS,
        max_header_bytes=8192,
    )
    assert (req.bucket, req.key) == ("my-bucket", "dir/key")


def test_bare_domain_host_is_path_style() -> None:
    req = parse_scope(
        scope("GET", "/b/k", host="localhost:9000"),
        virtual_host_domains=DOMAINS,
        max_header_bytes=8192,
    )
    assert (req.bucket, req.key) == ("b", "k")


def test_repeated_headers_are_joined_as_sigv4_expects() -> None:
    req = parse_scope(
        scope("GET", "/b", headers=[(b"x-amz-meta-a", b"1"), (b"X-Amz-Meta-A", b"2")]),
        virtual_host_domains=DOMAINS,
        max_header_bytes=8192,
    )
    assert req.headers["x-amz-meta-a"] == "1,2"


def test_oversized_header_section_is_refused() -> None:
    big = [(b"x-amz-meta-big", b"v" * 9000)]
    with pytest.raises(RequestHeaderSectionTooLarge):
        parse_scope(
            scope("GET", "/b", headers=big), virtual_host_domains=DOMAINS, max_header_bytes=8192
        )


@pytest.mark.parametrize(
    ("method", "path", "query", "handler"),
    [
        ("GET", "/", b"", handlers.list_buckets),
        ("PUT", "/b", b"", handlers.create_bucket),
        ("GET", "/b", b"list-type=2&prefix=x", handlers.list_objects),
        ("GET", "/b", b"location", handlers.get_bucket_location),
        ("POST", "/b", b"delete", handlers.delete_objects),
        ("GET", "/b/k", b"", handlers.get_object),
        ("GET", "/b/k", b"partNumber=2", handlers.get_object),
        ("PUT", "/b/k", b"partNumber=1&uploadId=u", handlers.upload_part),
        ("POST", "/b/k", b"uploads", handlers.create_multipart_upload),
        ("POST", "/b/k", b"uploadId=u", handlers.complete_multipart_upload),
        ("GET", "/b/k", b"tagging", handlers.get_object_tagging),
    ],
)
def test_routes_pick_the_operation(method: str, path: str, query: bytes, handler: object) -> None:
    req = parse_scope(
        scope(method, path, query), virtual_host_domains=DOMAINS, max_header_bytes=8192
    )
    assert route(req) is handler


def test_unknown_sub_resource_is_not_implemented_rather_than_misrouted() -> None:
    req = parse_scope(
        scope("PUT", "/b", b"policy"), virtual_host_domains=DOMAINS, max_header_bytes=8192
    )
    with pytest.raises(NotImplementedOperation):
        route(req)


def test_writing_to_the_service_root_is_not_allowed() -> None:
    req = parse_scope(scope("PUT", "/"), virtual_host_domains=DOMAINS, max_header_bytes=8192)
    with pytest.raises(MethodNotAllowed):
        route(req)


def test_a_put_naming_a_copy_source_routes_to_copy_object() -> None:
    headers = [(b"x-amz-copy-source", b"/b/src")]
    copy = parse_scope(
        scope("PUT", "/b/k", headers=headers), virtual_host_domains=DOMAINS, max_header_bytes=8192
    )
    plain = parse_scope(scope("PUT", "/b/k"), virtual_host_domains=DOMAINS, max_header_bytes=8192)

    assert route(copy) is handlers.copy_object
    assert route(plain) is handlers.put_object
