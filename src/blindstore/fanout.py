"""Write one ciphertext stream to several backends at once, with bounded memory.

Each target has a bounded queue; every block goes to every healthy target's queue, so the
slowest target paces the upload and memory stays at about ``depth`` blocks per target. A target
whose ``put`` fails is dropped from the fan-out without stopping the others. If the source
fails (a digest mismatch, a client gone), every target's chunk iterator raises, so each backend
aborts its write: nothing is stored anywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from blindstore.backends.base import Backend
from blindstore.errors import BlindstoreError

log = structlog.get_logger("blindstore.fanout")


class _Abort:
    """Sent instead of a block when the source failed: the target must not commit."""


class _SourceFailed(Exception):
    """Raised from a target's chunk iterator so that its backend aborts the write."""


_ABORT = _Abort()
_Send = MemoryObjectSendStream[bytes | _Abort]
_Receive = MemoryObjectReceiveStream[bytes | _Abort]
_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError)


@dataclass(frozen=True, slots=True)
class FanOut:
    """Bytes stored per backend that completed its write, and the error of each that failed."""

    sizes: dict[str, int]
    failures: dict[str, Exception]


async def fan_out(
    targets: Sequence[Backend],
    container: str,
    blob: str,
    chunks: AsyncIterator[bytes],
    *,
    depth: int = 1,
) -> FanOut:
    """Store ``chunks`` as ``blob`` on every target; re-raise the source's own error, if any.

    When the source fails, blobs of targets that completed anyway (a backend that returned
    before the end of its stream) are deleted before the error is re-raised.
    """
    sizes: dict[str, int] = {}
    failures: dict[str, Exception] = {}
    source_error: list[Exception] = []
    queues: list[
        tuple[
            Backend,
            MemoryObjectSendStream[bytes | _Abort],
            MemoryObjectReceiveStream[bytes | _Abort],
        ]
    ] = []
    for backend in targets:
        send, receive = anyio.create_memory_object_stream[bytes | _Abort](depth)
        queues.append((backend, send, receive))

    async def consume(backend: Backend, receive: _Receive) -> None:
        async def blocks() -> AsyncIterator[bytes]:
            async for item in receive:
                if isinstance(item, _Abort):
                    raise _SourceFailed
                yield item

        with receive:  # closing it makes the producer drop this target
            try:
                sizes[backend.name] = await backend.put(container, blob, blocks())
            except _SourceFailed:
                pass
            except Exception as exc:  # one target's failure must not stop the others
                failures[backend.name] = exc
                log.warning(
                    "replica_write_failed",
                    backend=backend.name,
                    error=type(exc).__name__,
                    detail=str(exc) if isinstance(exc, BlindstoreError) else None,
                )

    async def produce() -> None:
        live = {backend.name: send for backend, send, _ in queues}
        try:
            async for block in chunks:
                for name, send in list(live.items()):
                    try:
                        await send.send(block)
                    except _GONE:
                        del live[name]
                if not live:
                    break  # every target failed: the write cannot succeed
        except Exception as exc:
            source_error.append(exc)
            for send in live.values():
                with contextlib.suppress(*_GONE):
                    await send.send(_ABORT)
        finally:
            for _, send, _ in queues:
                send.close()
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async with anyio.create_task_group() as tg:
        for backend, _, receive in queues:
            tg.start_soon(consume, backend, receive)
        tg.start_soon(produce)
    if source_error:
        for backend in targets:
            if backend.name in sizes:
                with contextlib.suppress(BlindstoreError):
                    await backend.delete(container, blob)
        raise source_error[0]
    return FanOut(sizes, failures)
