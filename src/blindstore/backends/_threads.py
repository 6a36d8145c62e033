"""The one way cloud backends run a blocking SDK call: in a bounded worker thread, retried
with backoff while it fails transiently (stamina), the SDK's own retries being off."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import stamina

T = TypeVar("T")


async def call_with_retries(
    call: Callable[[], T],
    *,
    transient: type[Exception],
    attempts: int,
    timeout: float,
    limiter: anyio.CapacityLimiter,
    wait_initial: float = 0.05,
    wait_max: float = 1.0,
) -> T:
    """``call()`` in a worker thread; ``transient`` failures are retried, others raised at once."""
    async for attempt in stamina.retry_context(
        on=transient,
        attempts=attempts,
        timeout=timeout,
        wait_initial=wait_initial,
        wait_max=wait_max,
    ):
        with attempt:
            return await anyio.to_thread.run_sync(call, limiter=limiter)
    raise AssertionError("unreachable: stamina re-raises the last failure")
