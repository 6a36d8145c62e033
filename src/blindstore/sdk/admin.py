"""The admin plane over HTTP (JSON under ``/-/``, the admin bearer token): the ``Client``'s admin
methods. Plain ``urllib`` (no extra dependency); every refusal becomes an ``APIError``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, cast, overload
from urllib.parse import quote, urlencode

from blindstore.sdk.errors import APIError, TransportError, error_for
from blindstore.sdk.types import (
    AccessKey,
    AuditPage,
    AuditProblem,
    AuditRecord,
    AuditVerification,
    Explanation,
    Health,
    NewAccessKey,
    NewTenant,
    Page,
    PolicyProblem,
    PolicyValidation,
    Tenant,
    TransparencyRecord,
)

if TYPE_CHECKING:
    import ssl

Time = float | datetime | str


def _time(value: Time) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _segment(value: str) -> str:
    """One path segment: every reserved character escaped, "/" included."""
    return quote(value, safe="")


class AdminOperations:
    """Admin methods of ``Client`` (see docs/sdk.md); ``_admin_request`` sends the calls."""

    endpoint: str
    admin_token: str | None
    timeout: float

    def _ssl_context(self) -> ssl.SSLContext | None:
        raise NotImplementedError

    # -- plumbing ----------------------------------------------------------------------------

    def _admin_request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | None] | None = None,
        json_body: Any = None,
        text_body: str | None = None,
        content_type: str = "application/json",
    ) -> tuple[str, bytes]:
        """Send one admin call; (response content type, body). Raises ``APIError``."""
        import urllib.error
        import urllib.request

        url = self.endpoint + path
        if query:
            present = {k: str(v) for k, v in query.items() if v is not None}
            if present:
                url += "?" + urlencode(present)
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
        elif text_body is not None:
            data = text_body.encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        if self.admin_token is not None:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 (the caller's endpoint)
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=self.timeout, context=self._ssl_context()
            ) as response:
                return response.headers.get_content_type(), response.read()
        except urllib.error.HTTPError as exc:
            raise _admin_error(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransportError(f"{method} {path}: {exc}") from exc

    def _admin_json(self, method: str, path: str, **kwargs: Any) -> Any:
        _type, body = self._admin_request(method, path, **kwargs)
        return json.loads(body) if body else None

    # -- health ------------------------------------------------------------------------------

    def health(self) -> Health:
        """The gateway process is up (no token needed)."""
        return Health(status=self._admin_json("GET", "/-/health")["status"])

    def ready(self) -> Health:
        """The gateway can serve requests (its catalog and OpenBao answer); ``ServerError``
        (503 ``NotReady``) if not, naming what is down only to a client with the admin token."""
        return Health(status=self._admin_json("GET", "/-/ready")["status"])

    # -- tenants and access keys -------------------------------------------------------------

    def tenants_page(self, *, limit: int = 100, after: str | None = None) -> Page[Tenant]:
        """One page of tenants, by name."""
        found = self._admin_json("GET", "/-/tenants", query={"limit": limit, "after": after})
        return Page([_tenant(t) for t in found["tenants"]], found["next"])

    def tenants(self, *, page_size: int = 100) -> Iterator[Tenant]:
        """Every tenant, by name (fetched a page at a time)."""
        after: str | None = None
        while True:
            page = self.tenants_page(limit=page_size, after=after)
            yield from page.items
            if page.next is None:
                return
            after = page.next

    def tenant(self, name: str) -> Tenant:
        """One tenant; ``NotFoundError`` (``NoSuchTenant``) if there is none by this name."""
        return _tenant(self._admin_json("GET", f"/-/tenants/{_segment(name)}"))

    def create_tenant(self, name: str) -> NewTenant:
        """Create a tenant, its Transit key and its first access key pair. The secret key is
        in the answer, and nowhere else ever again."""
        made = self._admin_json("POST", "/-/tenants", json_body={"name": name})
        return NewTenant(tenant=_tenant(made["tenant"]), access_key=_new_key(made["access_key"]))

    def access_keys_page(
        self, tenant: str, *, limit: int = 100, after: str | None = None
    ) -> Page[AccessKey]:
        found = self._admin_json(
            "GET",
            f"/-/tenants/{_segment(tenant)}/access-keys",
            query={"limit": limit, "after": after},
        )
        return Page(
            [AccessKey(k["access_key_id"], k["created"]) for k in found["access_keys"]],
            found["next"],
        )

    def access_keys(self, tenant: str, *, page_size: int = 100) -> list[AccessKey]:
        """A tenant's access keys, by id (never their secrets)."""
        keys: list[AccessKey] = []
        after: str | None = None
        while True:
            page = self.access_keys_page(tenant, limit=page_size, after=after)
            keys += page.items
            if page.next is None:
                return keys
            after = page.next

    def create_access_key(self, tenant: str) -> NewAccessKey:
        """A new key pair for a tenant (its secret is shown here only)."""
        return _new_key(self._admin_json("POST", f"/-/tenants/{_segment(tenant)}/access-keys"))

    def revoke_access_key(self, tenant: str, access_key_id: str) -> None:
        """Delete an access key: refused at once by this gateway, within seconds by others."""
        self._admin_request(
            "DELETE", f"/-/tenants/{_segment(tenant)}/access-keys/{_segment(access_key_id)}"
        )

    # -- placement policy --------------------------------------------------------------------

    def validate_policy(self, text: str) -> PolicyValidation:
        """Check a policy document (YAML) without applying it."""
        found = self._admin_json(
            "POST", "/-/policy/validate", text_body=text, content_type="application/yaml"
        )
        return PolicyValidation(
            valid=found["valid"],
            problems=[PolicyProblem(p["line"], p["reason"]) for p in found["problems"]],
            backends=found["backends"],
            rules=found["rules"],
        )

    def explain(
        self,
        tenant: str,
        bucket: str,
        key: str,
        *,
        tags: Mapping[str, str] | None = None,
        classification: str | None = None,
        size: int | None = None,
        content_type: str | None = None,
    ) -> Explanation:
        """Which rule of the running policy would place this object, why, and where."""
        facts = {
            "tenant": tenant,
            "bucket": bucket,
            "key": key,
            "tags": dict(tags or {}),
            "classification": classification,
            "size": size,
            "content_type": content_type,
        }
        return cast(Explanation, self._admin_json("POST", "/-/policy/explain", json_body=facts))

    def reload_policy(self) -> bool:
        """Re-read the policy file; False if it is invalid (the running policy then stays)."""
        return bool(self._admin_json("POST", "/-/policy/reload")["reloaded"])

    # -- transparency ------------------------------------------------------------------------

    def transparency(self, bucket: str, key: str) -> TransparencyRecord:
        """Where an object's bytes are (each replica's backend, provider, region, jurisdiction,
        certifications, HDS activity carriers), who holds its key, which rule placed it and
        why, its provenance and consent, when it was written and last accessed."""
        path = f"/-/transparency/objects/{_segment(bucket)}/{quote(key, safe='/')}"
        return cast(TransparencyRecord, self._admin_json("GET", path))

    def bucket_summary(self, bucket: str) -> TransparencyRecord:
        """Objects and bytes of a bucket per backend, provider and jurisdiction."""
        path = f"/-/transparency/buckets/{_segment(bucket)}"
        return cast(TransparencyRecord, self._admin_json("GET", path))

    def tenant_summary(self, tenant: str) -> TransparencyRecord:
        """Objects and bytes of a tenant per backend, provider and jurisdiction."""
        path = f"/-/transparency/tenants/{_segment(tenant)}"
        return cast(TransparencyRecord, self._admin_json("GET", path))

    # -- audit -------------------------------------------------------------------------------

    def audit_query(
        self,
        *,
        object_id: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
        principal: str | None = None,
        tenant: str | None = None,
        operation: str | None = None,
        since: Time | None = None,
        until: Time | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> AuditPage:
        """One page of audit records matching every filter given (times: seconds since the
        epoch, an aware datetime or ISO 8601)."""
        query: dict[str, str | int | None] = {
            "object_id": object_id,
            "bucket": bucket,
            "key": key,
            "principal": principal,
            "tenant": tenant,
            "operation": operation,
            "since": None if since is None else _time(since),
            "until": None if until is None else _time(until),
            "limit": limit,
            "after": after,
        }
        found = self._admin_json("GET", "/-/audit/records", query=query)
        following = found.get("next")
        return AuditPage(
            records=cast(list[AuditRecord], found["records"]),
            next=None if following is None else str(following),
        )

    def audit_records(self, *, page_size: int = 100, **filters: Any) -> Iterator[AuditRecord]:
        """Every matching audit record (``audit_query``'s filters), fetched page by page."""
        after: str | None = None
        while True:
            page = self.audit_query(limit=page_size, after=after, **filters)
            yield from page.records
            if page.next is None:
                return
            after = page.next

    def audit_verify(self) -> AuditVerification:
        """Check the whole hash chain and its signed checkpoints; every problem, with its
        record (edited, deleted, inserted, reordered...)."""
        found = self._admin_json("POST", "/-/audit/verify")
        return AuditVerification(
            intact=bool(found["intact"]),
            records=int(found["records"]),
            problems=[
                AuditProblem(seq=p.get("seq"), kind=str(p["kind"]), detail=str(p.get("detail", "")))
                for p in found.get("problems", [])
            ],
            last_checkpoint=found.get("last_checkpoint"),
            raw=found,
        )

    # -- reports -----------------------------------------------------------------------------

    @overload
    def responsibilities(self, format: Literal["json"] = "json") -> dict[str, Any]: ...

    @overload
    def responsibilities(self, format: Literal["md", "html"]) -> str: ...

    def responsibilities(self, format: Literal["json", "md", "html"] = "json") -> Any:
        """The HDS responsibility notice: who carries each of the six HDS activities for each
        backend in use. JSON as a dict; Markdown and HTML as text, ready to publish."""
        _type, body = self._admin_request(
            "GET", "/-/reports/responsibilities", query={"format": format}
        )
        if format == "json":
            return json.loads(body)
        return body.decode("utf-8")


def _tenant(found: Mapping[str, Any]) -> Tenant:
    return Tenant(
        name=found["name"],
        tenant_id=found["tenant_id"],
        transit_key=found["transit_key"],
        container=found["container"],
        created=found["created"],
        shredded=found.get("shredded"),
    )


def _new_key(found: Mapping[str, Any]) -> NewAccessKey:
    return NewAccessKey(found["tenant"], found["access_key_id"], found["secret_key"])


def _admin_error(status: int, body: bytes) -> APIError:
    try:
        found = json.loads(body)
    except ValueError:
        found = None
    if isinstance(found, dict) and "code" in found:
        return error_for(
            status, str(found["code"]), str(found.get("message", "")), details=found.get("details")
        )
    if isinstance(found, dict) and "detail" in found:
        # FastAPI's own shape (an endpoint added without the admin error handlers).
        return error_for(status, f"HTTP{status}", str(found["detail"]))
    return error_for(status, f"HTTP{status}", body.decode("utf-8", "replace")[:500])
