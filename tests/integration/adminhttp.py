"""Call the admin plane over plain HTTP (urllib): status, headers and decoded JSON body."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class AdminResponse:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def code(self) -> str:
        """The ``code`` of an admin error body."""
        assert set(self.body) == {"code", "message", "details"}, self.body
        return str(self.body["code"])


def call(
    endpoint: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> AdminResponse:
    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    request = urllib.request.Request(
        endpoint + path,
        data=data,
        method=method,
        headers={"Content-Type": content_type, **(headers or {})},
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return AdminResponse(
                response.status, dict(response.headers), json.loads(raw) if raw else None
            )
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return AdminResponse(exc.code, dict(exc.headers), json.loads(raw) if raw else None)
