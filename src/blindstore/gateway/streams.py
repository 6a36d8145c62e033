"""Module-level async stream helpers of the gateway: regrouping, prefetching, windowing.

They hold no gateway state; writes (``_write_segment``) and reads (``_read_part``) use them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from blindstore import crypto
from blindstore.errors import IntegrityError
from blindstore.gateway.records import BodyCheck

#: Blocks at least this large are hashed and encrypted in parallel worker threads.
PARALLEL_MIN = 256 * 1024


def window(plain: bytes, skip: int, remaining: int) -> tuple[bytes, int, int]:
    """Cut the requested window out of a run of verified plaintext."""
    if skip:
        cut = min(skip, len(plain))
        plain = plain[cut:]
        skip -= cut
    out = plain[:remaining]
    return out, skip, remaining - len(out)


async def prefetched(blocks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Yield blocks while the next one is already being received.

    Without it, the socket is read only between blocks (uvicorn stops reading once 64 KiB are
    buffered), so receiving and hashing/encrypting never overlap. A short first block is the
    whole body: no task is started for small objects.
    """
    first = await anext(blocks, None)
    if first is None:
        return
    if len(first) < size:
        yield first
        return
    pending = asyncio.ensure_future(anext(blocks, None))
    try:
        yield first
        while (block := await pending) is not None:
            pending = asyncio.ensure_future(anext(blocks, None))
            yield block
    finally:
        if not pending.done():
            pending.cancel()
        elif not pending.cancelled():
            pending.exception()  # retrieved: the caller already has its own error


def digest_and_seal(check: BodyCheck, sealer: crypto.SegmentSealer, block: bytes) -> bytes:
    check.update_others(block)
    return sealer.update(block)


async def blocks(body: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup a body into blocks of at least ``size`` bytes (the last may be shorter)."""
    pending: list[bytes] = []
    pending_len = 0
    async for data in body:
        pending.append(data)
        pending_len += len(data)
        if pending_len >= size:
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending, pending_len = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else b"".join(pending)


async def take(stream: AsyncIterator[bytes], n: int) -> tuple[bytes, AsyncIterator[bytes]]:
    """The first ``n`` bytes of a stream, and the stream of everything after them."""
    buf = bytearray()
    async for data in stream:
        buf += data
        if len(buf) >= n:
            break
    if len(buf) < n:
        raise IntegrityError("blob shorter than its header")
    rest = bytes(buf[n:])

    async def remainder() -> AsyncIterator[bytes]:
        if rest:
            yield rest
        async for data in stream:
            yield data

    return bytes(buf[:n]), remainder()


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def empty() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk
