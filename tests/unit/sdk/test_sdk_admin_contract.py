"""The SDK's transparency, audit and report methods against a fake admin server that answers
with the documented shapes (the endpoints themselves are tested where they are built), and the
translation of admin error bodies into SDK errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from blindstore import Client
from blindstore.sdk import (
    AuditVerification,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    TransportError,
)

TOKEN = "fake-admin-token"

RECORD = {
    "bucket": "scans",
    "key": "DUPONT/IRM 1.dcm",
    "object_id": "0f" * 16,
    "replicas": [
        {
            "backend": "vault-disk",
            "provider": "Hôpital Nord",
            "region": "fr-north",
            "jurisdiction": "EEA",
            "certifications": ["HDS"],
            "hds_activities": {"physical_sites": "Hôpital Nord"},
        }
    ],
    "key_custodian": {"vault": "https://vault:8200", "key_name": "hgw-t-ab", "key_version": 3},
    "placement": {"rule": "identifying-on-premises", "reasons": ["classification is identifying"]},
    "provenance": {"consent_ref": "CONS-1"},
    "written": 1700000000.0,
    "last_accessed": None,
}
AUDIT = [
    {"seq": n, "time": 1700000000.0 + n, "principal": "BSKEY", "operation": "GetObject"}
    for n in range(1, 6)
]


@dataclass
class FakeAdmin:
    """Answers like the admin plane; keeps every request it saw."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    #: path -> (status, content type, body) overrides.
    canned: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)

    def answer(self, method: str, target: str, headers: Any) -> tuple[int, str, bytes]:
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = unquote(parts.path)
        self.seen.append({"method": method, "path": path, "raw": parts.path, "query": query})
        if path in self.canned:
            return self.canned[path]
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return _json(401, {"code": "AdminTokenRequired", "message": "no", "details": []})
        if path.startswith("/-/transparency/objects/"):
            return _json(200, RECORD)
        if path.startswith("/-/transparency/buckets/"):
            return _json(200, {"bucket": "scans", "objects": 2, "bytes": 10, "by_backend": {}})
        if path.startswith("/-/transparency/tenants/"):
            return _json(200, {"tenant": "demo", "objects": 7, "bytes": 99, "by_backend": {}})
        if path == "/-/audit/records":
            after = int(query.get("after", 0))
            limit = int(query.get("limit", 100))
            page = [r for r in AUDIT if r["seq"] > after][:limit]
            more = page and page[-1]["seq"] < AUDIT[-1]["seq"]
            return _json(200, {"records": page, "next": page[-1]["seq"] if more else None})
        if path == "/-/audit/verify" and method == "POST":
            return _json(
                200,
                {
                    "intact": False,
                    "records": 5,
                    "problems": [{"seq": 3, "kind": "edited", "detail": "hash mismatch"}],
                    "last_checkpoint": {"seq": 2, "key_version": 1},
                    "unsigned_tail": 3,
                },
            )
        if path == "/-/reports/responsibilities":
            fmt = query.get("format", "json")
            if fmt == "json":
                return _json(200, {"backends": [], "uncarried": []})
            kind = "text/markdown" if fmt == "md" else "text/html"
            return 200, kind, f"# notice ({fmt})".encode()
        return _json(404, {"code": "NotFound", "message": "no route", "details": []})


def _json(status: int, body: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()


@pytest.fixture
def fake() -> Iterator[tuple[FakeAdmin, str]]:
    admin = FakeAdmin()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, kind, body = admin.answer(self.command, self.path, self.headers)
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield admin, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_transparency_of_an_object_escapes_its_key_but_keeps_its_slashes(
    fake: tuple[FakeAdmin, str],
) -> None:
    admin, endpoint = fake
    client = Client(endpoint, admin_token=TOKEN)

    record = client.transparency("scans", "DUPONT/IRM 1.dcm")

    assert record == RECORD
    assert admin.seen[-1]["path"] == "/-/transparency/objects/scans/DUPONT/IRM 1.dcm"
    assert admin.seen[-1]["raw"] == "/-/transparency/objects/scans/DUPONT/IRM%201.dcm"


def test_bucket_and_tenant_summaries(fake: tuple[FakeAdmin, str]) -> None:
    admin, endpoint = fake
    client = Client(endpoint, admin_token=TOKEN)

    assert client.bucket_summary("scans")["objects"] == 2
    assert client.tenant_summary("Hôpital Nord")["bytes"] == 99
    assert admin.seen[-1]["path"] == "/-/transparency/tenants/Hôpital Nord"
    client.tenant_summary("a/b")
    assert admin.seen[-1]["raw"] == "/-/transparency/tenants/a%2Fb"


def test_audit_query_sends_every_filter(fake: tuple[FakeAdmin, str]) -> None:
    admin, endpoint = fake
    client = Client(endpoint, admin_token=TOKEN)

    page = client.audit_query(
        object_id="0f" * 16,
        bucket="scans",
        key="DUPONT/IRM.dcm",
        principal="BSKEY",
        tenant="demo",
        operation="GetObject",
        since=datetime(2024, 1, 1, tzinfo=UTC),
        until=1800000000,
        limit=2,
    )

    assert [r["seq"] for r in page.records] == [1, 2]
    assert page.next == "2"
    assert admin.seen[-1]["query"] == {
        "object_id": "0f" * 16,
        "bucket": "scans",
        "key": "DUPONT/IRM.dcm",
        "principal": "BSKEY",
        "tenant": "demo",
        "operation": "GetObject",
        "since": "2024-01-01T00:00:00+00:00",
        "until": "1800000000",
        "limit": "2",
    }


def test_audit_records_follow_every_page(fake: tuple[FakeAdmin, str]) -> None:
    admin, endpoint = fake
    client = Client(endpoint, admin_token=TOKEN)

    records = list(client.audit_records(page_size=2, operation="GetObject"))

    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert [s["query"].get("after") for s in admin.seen] == [None, "2", "4"]
    assert all(s["query"]["operation"] == "GetObject" for s in admin.seen)


def test_audit_verify_reports_each_problem(fake: tuple[FakeAdmin, str]) -> None:
    _admin, endpoint = fake
    client = Client(endpoint, admin_token=TOKEN)

    report = client.audit_verify()

    assert isinstance(report, AuditVerification)
    assert report.intact is False
    assert report.records == 5
    assert [(p.seq, p.kind) for p in report.problems] == [(3, "edited")]
    assert report.last_checkpoint == {"seq": 2, "key_version": 1}
    assert report.raw["unsigned_tail"] == 3


def test_the_responsibility_notice_as_json_or_text(fake: tuple[FakeAdmin, str]) -> None:
    admin, endpoint = fake
    client = Client(endpoint, admin_token=TOKEN)

    assert client.responsibilities() == {"backends": [], "uncarried": []}
    assert client.responsibilities("md") == "# notice (md)"
    assert client.responsibilities("html") == "# notice (html)"
    assert [s["query"]["format"] for s in admin.seen] == ["json", "md", "html"]


def test_admin_error_bodies_become_sdk_errors(fake: tuple[FakeAdmin, str]) -> None:
    admin, endpoint = fake
    admin.canned["/-/audit/verify"] = _json(
        503, {"code": "ServiceUnavailable", "message": "catalog down", "details": []}
    )
    admin.canned["/-/transparency/objects/scans/nope"] = _json(
        404, {"code": "NoSuchKey", "message": "no such object", "details": []}
    )
    admin.canned["/-/audit/records"] = _json(
        422,
        {
            "code": "ValidationFailed",
            "message": "bad",
            "details": [{"location": "query.since", "reason": "not a time"}],
        },
    )
    admin.canned["/-/reports/responsibilities"] = (500, "text/plain", b"boom")
    client = Client(endpoint, admin_token=TOKEN)

    with pytest.raises(ServerError) as down:
        client.audit_verify()
    assert (down.value.status, down.value.code, down.value.message) == (
        503,
        "ServiceUnavailable",
        "catalog down",
    )
    with pytest.raises(NotFoundError) as missing:
        client.transparency("scans", "nope")
    assert missing.value.code == "NoSuchKey"
    with pytest.raises(InvalidRequestError) as wrong:
        client.audit_query(since="yesterday")
    assert wrong.value.details == [{"location": "query.since", "reason": "not a time"}]
    with pytest.raises(ServerError) as opaque:
        client.responsibilities()
    assert (opaque.value.code, opaque.value.message) == ("HTTP500", "boom")
    with pytest.raises(AuthenticationError):
        Client(endpoint, admin_token="wrong").bucket_summary("scans")


def test_an_unreachable_gateway_is_a_transport_error() -> None:
    client = Client("http://127.0.0.1:9", admin_token=TOKEN, timeout=2)

    with pytest.raises(TransportError) as failed:
        client.health()
    assert failed.value.status == 0


def test_s3_calls_need_keys_but_admin_calls_do_not() -> None:
    client = Client("http://127.0.0.1:9", admin_token=TOKEN)

    with pytest.raises(ValueError, match="access key"):
        client.create_bucket("b")
