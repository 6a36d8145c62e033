"""The ceiling: a trivial raw-ASGI S3 endpoint that discards uploads and serves zero-cost bytes.

It does what no real gateway can skip (parse the request, read every body byte, answer with
S3-shaped headers and documents) and nothing else: no authentication, no hashing, no storage,
no encryption. Run under the same uvicorn settings as the gateway (httptools, uvloop, no access
log), it shows how fast the HTTP stack and the client are on their own, so a gateway number can
be read as a fraction of it.

Objects are remembered by size only (decoded length, so aws-chunked uploads work); a GET serves
that many bytes from one preallocated buffer. Enough of S3 for boto3's put_object, get_object,
head_object, create_bucket and multipart upload (upload_fileobj).

    python benchmarks/ceiling_app.py --port 9100
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: One buffer, sent as many times as a GET needs (never copied per request).
CHUNK = 1024 * 1024
_BUFFER = secrets.token_bytes(CHUNK)
#: A plausible, constant ETag: computing an MD5 is work the ceiling does not do.
_ETAG = '"' + secrets.token_hex(16) + '"'
_XML = [(b"content-type", b"application/xml")]


class CeilingApp:
    """A raw ASGI callable; state is a dict of object sizes and open multipart uploads."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.uploads: dict[str, int] = {}
        self.modified = formatdate(time.time(), usegmt=True).encode()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        bucket, _, key = scope["path"].lstrip("/").partition("/")
        query = parse_qs(scope["query_string"].decode(), keep_blank_values=True)
        headers = dict(scope["headers"])
        if not key:
            await self._bucket(method, bucket, receive, send)
        elif method == "PUT":
            size = await _discard(receive)
            decoded = headers.get(b"x-amz-decoded-content-length")
            size = int(decoded) if decoded is not None else size
            if "uploadId" in query:
                self.uploads[query["uploadId"][0]] += size
            else:
                self.sizes[scope["path"]] = size
            await _respond(send, 200, [(b"etag", _ETAG.encode())])
        elif method in ("GET", "HEAD"):
            await self._get(scope["path"], method == "HEAD", send)
        elif method == "POST" and "uploads" in query:
            await _discard(receive)
            upload_id = secrets.token_hex(8)
            self.uploads[upload_id] = 0
            await _respond(send, 200, _XML, _initiate(bucket, key, upload_id))
        elif method == "POST" and "uploadId" in query:
            await _discard(receive)
            self.sizes[scope["path"]] = self.uploads.pop(query["uploadId"][0])
            await _respond(send, 200, _XML, _complete(bucket, key))
        elif method == "DELETE":
            await _discard(receive)
            if "uploadId" in query:
                self.uploads.pop(query["uploadId"][0], None)
            else:
                self.sizes.pop(scope["path"], None)
            await _respond(send, 204, [])
        else:
            await _discard(receive)
            await _respond(send, 405, _XML, _error("MethodNotAllowed"))

    async def _bucket(self, method: str, bucket: str, receive: Receive, send: Send) -> None:
        await _discard(receive)
        if method == "PUT":
            await _respond(send, 200, [(b"location", f"/{bucket}".encode())])
        elif method == "HEAD":
            await _respond(send, 200, [(b"x-amz-bucket-region", b"us-east-1")])
        else:
            await _respond(send, 405, _XML, _error("MethodNotAllowed"))

    async def _get(self, path: str, head: bool, send: Send) -> None:
        size = self.sizes.get(path)
        if size is None:
            await _respond(send, 404, _XML, b"" if head else _error("NoSuchKey"))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(size).encode()),
                    (b"content-type", b"binary/octet-stream"),
                    (b"etag", _ETAG.encode()),
                    (b"last-modified", self.modified),
                    (b"accept-ranges", b"bytes"),
                ],
            }
        )
        if head:
            await send({"type": "http.response.body", "body": b""})
            return
        remaining = size
        while remaining > CHUNK:
            await send({"type": "http.response.body", "body": _BUFFER, "more_body": True})
            remaining -= CHUNK
        await send({"type": "http.response.body", "body": _BUFFER[:remaining]})


async def _discard(receive: Receive) -> int:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return size
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return size


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _initiate(bucket: str, key: str, upload_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult>'
        f"<Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>{upload_id}</UploadId>"
        "</InitiateMultipartUploadResult>"
    ).encode()


def _complete(bucket: str, key: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult>'
        f"<Bucket>{bucket}</Bucket><Key>{key}</Key><ETag>{_ETAG}</ETag>"
        "</CompleteMultipartUploadResult>"
    ).encode()


def _error(code: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code></Error>'.encode()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    # The gateway's uvicorn settings (blindstore.runtime.make_server), uvloop chosen here.
    uvicorn.run(
        CeilingApp(),
        host=args.host,
        port=args.port,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
