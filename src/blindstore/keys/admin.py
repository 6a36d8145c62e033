"""Transit key administration: rotation, rewrap, soft delete, destruction, signing.

These are the operations the gateway's own identity is refused (SECURITY-NOTES §2.6): the
``blindstore keys`` commands run them with an administrative token (the ``hgw-kms-admin`` /
``hgw-rewrap`` policies in ``deploy/openbao``). Nothing here ever sees a DEK in clear:
``transit/rewrap`` re-encrypts wrapped DEKs inside OpenBao.

hvac is blocking: each call runs in a worker thread. Errors are translated by the same
``_map_errors`` as the data plane: unreachable → ``KeyServiceUnavailable``, refused →
``KeyServiceError`` (with OpenBao's reason, which names no secret).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import hvac.exceptions

from blindstore.errors import KeyServiceError
from blindstore.keys import justification
from blindstore.keys.base import parse_key_version
from blindstore.keys.transit import _map_errors, check_key_name

#: Items per ``transit/rewrap`` call (OpenBao's request limit; see transit.py).
REWRAP_BATCH_ITEMS = 240


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What Transit says about a key (``GET transit/keys/:name``)."""

    name: str
    type: str
    latest_version: int
    min_decryption_version: int
    #: Version → creation time (seconds since the epoch).
    versions: Mapping[int, float]
    deletion_allowed: bool
    soft_deleted: bool
    #: Version → raw public key (signing keys only).
    public_keys: Mapping[int, bytes]


@dataclass(frozen=True, slots=True)
class RewrapItem:
    wrapped: str
    context: bytes


class TransitAdmin:
    """Administrative Transit calls over an ``hvac.Client`` (see ``transit.make_client``)."""

    def __init__(self, client: Any, *, mount: str = "transit") -> None:
        self._client = client
        self._prefix = f"/v1/{mount}"

    async def key_info(self, name: str) -> KeyInfo | None:
        """The key, or None if it does not exist."""
        check_key_name(name)
        try:
            response = await self._call("get", f"keys/{name}")
        except KeyServiceError as exc:
            if isinstance(exc.__cause__, hvac.exceptions.InvalidPath):
                return None
            raise
        return _key_info(name, _data(response))

    async def rotate(self, name: str) -> int:
        """Rotate the key; its new latest version."""
        check_key_name(name)
        await self._call("post", f"keys/{name}/rotate", {})
        info = await self.key_info(name)
        if info is None:
            raise KeyServiceError(f"Transit key {name} vanished during rotation")
        return info.latest_version

    async def set_min_decryption_version(self, name: str, version: int) -> None:
        """Refuse to unwrap anything wrapped below ``version`` (older versions are archived)."""
        check_key_name(name)
        await self._call("post", f"keys/{name}/config", {"min_decryption_version": version})

    async def rewrap(self, name: str, items: Sequence[RewrapItem]) -> list[str | KeyServiceError]:
        """Re-wrap under the latest version, batched; a refused item fails alone."""
        check_key_name(name)
        outcomes: list[str | KeyServiceError] = []
        for start in range(0, len(items), REWRAP_BATCH_ITEMS):
            chunk = items[start : start + REWRAP_BATCH_ITEMS]
            body = {
                "batch_input": [
                    {"ciphertext": i.wrapped, "context": _b64(i.context)} for i in chunk
                ],
                "partial_failure_response_code": 200,
            }
            results = _data(await self._call("post", f"rewrap/{name}", body)).get("batch_results")
            if not isinstance(results, list) or len(results) != len(chunk):
                raise KeyServiceError("unexpected Transit response: batch_results do not match")
            for result in results:
                outcomes.append(_rewrapped(result))
        return outcomes

    async def soft_delete(self, name: str) -> None:
        """Block every use of the key, keeping its material (OpenBao; undone by ``restore``)."""
        check_key_name(name)
        await self._call("delete", f"keys/{name}/soft-delete")

    async def restore(self, name: str) -> None:
        """Undo ``soft_delete``."""
        check_key_name(name)
        await self._call("post", f"keys/{name}/soft-delete-restore", {})

    async def destroy(self, name: str) -> None:
        """Delete the key and every version of it, for good. Missing already: nothing to do."""
        check_key_name(name)
        if await self.key_info(name) is None:
            return
        await self._call("post", f"keys/{name}/config", {"deletion_allowed": True})
        await self._call("delete", f"keys/{name}")
        if await self.key_info(name) is not None:
            raise KeyServiceError(f"Transit key {name} still exists after deletion")

    async def ensure_signing_key(self, name: str) -> KeyInfo:
        """The ed25519 signing key, created if missing (provisioning normally creates it)."""
        info = await self.key_info(name)
        if info is None:
            await self._call("post", f"keys/{name}", {"type": "ed25519"})
            info = await self.key_info(name)
        if info is None or info.type != "ed25519":
            raise KeyServiceError(f"Transit key {name} is not an ed25519 signing key")
        return info

    async def ensure_hmac_key(self, name: str) -> KeyInfo:
        """The HMAC key (type ``hmac``, 256 bits, not exportable) that keys data-subject digests,
        created if missing (provisioning normally creates it)."""
        info = await self.key_info(name)
        if info is None:
            await self._call("post", f"keys/{name}", {"type": "hmac", "key_size": 32})
            info = await self.key_info(name)
        if info is None or info.type != "hmac":
            raise KeyServiceError(f"Transit key {name} is not an HMAC key")
        return info

    async def sign(self, name: str, message: bytes) -> tuple[str, int]:
        """An ed25519 signature of ``message`` (``vault:vN:<b64>``) and the key version used."""
        check_key_name(name)
        data = _data(await self._call("post", f"sign/{name}", {"input": _b64(message)}))
        signature = data.get("signature")
        if not isinstance(signature, str):
            raise KeyServiceError("unexpected Transit response: no signature")
        return signature, parse_key_version(signature)

    async def display_name(self) -> str | None:
        """Who the token belongs to (``auth/token/lookup-self``), if the token may say."""
        try:
            data = _data(await self._call_raw("get", "/v1/auth/token/lookup-self"))
        except KeyServiceError:
            return None
        name = data.get("display_name")
        meta = data.get("meta")
        role = meta.get("role_name") if isinstance(meta, dict) else None
        parts = [str(p) for p in (name, role) if isinstance(p, str) and p]
        return ":".join(parts) or None

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return await self._call_raw(method, f"{self._prefix}/{path}", body)

    async def _call_raw(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        # Read in the caller's context: the worker thread does not inherit it.
        why = justification.header_value(justification.current())
        headers = {justification.HEADER: why} if why else None

        def request() -> Any:
            with _map_errors():
                return self._client.adapter.request(method, path, json=body, headers=headers)

        return await anyio.to_thread.run_sync(request)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _data(response: object) -> dict[str, Any]:
    if isinstance(response, dict) and isinstance(response.get("data"), dict):
        data: dict[str, Any] = response["data"]
        return data
    return {}


def _key_info(name: str, data: Mapping[str, Any]) -> KeyInfo:
    versions: dict[int, float] = {}
    public_keys: dict[int, bytes] = {}
    for version, value in (data.get("keys") or {}).items():
        if isinstance(value, dict):  # signing keys: creation time and public key per version
            versions[int(version)] = 0.0
            if value.get("public_key"):
                public_keys[int(version)] = base64.b64decode(value["public_key"])
        else:
            versions[int(version)] = float(value)
    return KeyInfo(
        name=name,
        type=str(data.get("type", "")),
        latest_version=int(data.get("latest_version", 0)),
        min_decryption_version=int(data.get("min_decryption_version", 0)),
        versions=versions,
        deletion_allowed=bool(data.get("deletion_allowed")),
        soft_deleted=bool(data.get("soft_deleted")),
        public_keys=public_keys,
    )


def _rewrapped(result: object) -> str | KeyServiceError:
    if not isinstance(result, dict):
        return KeyServiceError("unexpected Transit response item")
    if result.get("error"):
        return KeyServiceError(f"Transit refused to rewrap: {result['error']}")
    wrapped = result.get("ciphertext")
    if not isinstance(wrapped, str):
        return KeyServiceError("unexpected Transit response: no ciphertext")
    return wrapped
