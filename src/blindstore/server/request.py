"""An S3 request as the S3 plane sees it: ASGI scope → method, bucket, key, query, headers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from blindstore.errors import InvalidURI, RequestHeaderSectionTooLarge


@dataclass(slots=True)
class S3Request:
    method: str
    #: The path exactly as sent (percent-encoded), which SigV4 signs.
    raw_path: str
    raw_query: str
    query: dict[str, str]
    #: Lower-case names; repeated headers joined with "," as SigV4 canonicalises them.
    headers: dict[str, str]
    host: str
    bucket: str
    key: str
    client: str

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


def _host_bucket(host: str, domains: tuple[str, ...]) -> str | None:
    """The bucket of a virtual-hosted-style Host (``bucket.domain[:port]``), if it is one."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    for domain in domains:
        suffix = "." + domain
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def parse_scope(
    scope: dict[str, Any], *, virtual_host_domains: tuple[str, ...], max_header_bytes: int
) -> S3Request:
    headers: dict[str, str] = {}
    total = 0
    for raw_name, raw_value in scope["headers"]:
        total += len(raw_name) + len(raw_value) + 4
        name = raw_name.decode("latin-1").lower()
        # The encoding SigV4 verification reverses to get the wire bytes back.
        value = raw_value.decode("utf-8", "surrogateescape").strip(" \t")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    if total > max_header_bytes:
        raise RequestHeaderSectionTooLarge(MaxSizeAllowed=str(max_header_bytes))
    raw_path_bytes: bytes | None = scope.get("raw_path")
    raw_path = (
        raw_path_bytes.partition(b"?")[0].decode("utf-8", "surrogateescape")
        if raw_path_bytes
        else scope["path"]
    )
    raw_query = scope.get("query_string", b"").decode("utf-8", "surrogateescape")
    try:
        query = dict(parse_qsl(raw_query, keep_blank_values=True, strict_parsing=False))
        path = unquote(raw_path, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidURI() from exc
    host = headers.get("host", "")
    bucket_from_host = _host_bucket(host, virtual_host_domains)
    if bucket_from_host is not None:
        bucket, key = bucket_from_host, path[1:]
    else:
        bucket, _, key = path[1:].partition("/")
    client = scope.get("client") or ("", 0)
    return S3Request(
        method=scope["method"],
        raw_path=raw_path,
        raw_query=raw_query,
        query=query,
        headers=headers,
        host=host,
        bucket=bucket,
        key=key,
        client=str(client[0]),
    )
