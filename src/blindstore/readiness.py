"""Readiness: whether the gateway's dependencies answer, probed cheaply and cached briefly.

``/-/ready`` is polled by load balancers and orchestrators every few seconds, often by several
at once: each dependency is probed once per ``cache_seconds`` whoever asks, and a probe that
does not answer within ``timeout_seconds`` (a frozen OpenBao accepts connections and never
replies) counts as down.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

import anyio

from blindstore.errors import BlindstoreError

#: A dependency probe: returns when the dependency answers, raises otherwise.
Probe = Callable[[], Awaitable[None]]

#: How long one probe result is reused.
CACHE_SECONDS = 1.0
#: How long a probe may take before its dependency counts as down.
TIMEOUT_SECONDS = 2.0


class Readiness:
    """Probes named dependencies (``catalog``, ``vault``); ``failures()`` says which are down."""

    def __init__(
        self,
        probes: Mapping[str, Probe],
        *,
        cache_seconds: float = CACHE_SECONDS,
        timeout_seconds: float = TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probes = dict(probes)
        self._cache_seconds = cache_seconds
        self._timeout_seconds = timeout_seconds
        self._clock = clock
        self._lock = anyio.Lock()
        self._result: dict[str, str] = {}
        self._expires = float("-inf")

    async def failures(self) -> dict[str, str]:
        """Each dependency that is down, with a short reason (never a secret); empty: ready."""
        async with self._lock:
            # Callers that queued behind a probe in flight reuse its result.
            if self._clock() < self._expires:
                return dict(self._result)
            result: dict[str, str] = {}

            async def run(name: str, probe: Probe) -> None:
                reason = await self._probe(probe)
                if reason is not None:
                    result[name] = reason

            async with anyio.create_task_group() as tg:
                for name, probe in self._probes.items():
                    tg.start_soon(run, name, probe)
            self._result = result
            self._expires = self._clock() + self._cache_seconds
            return dict(result)

    async def _probe(self, probe: Probe) -> str | None:
        with anyio.move_on_after(self._timeout_seconds):
            try:
                await probe()
            except BlindstoreError as exc:
                return f"does not answer ({type(exc).__name__})"
            return None
        return f"no answer within {self._timeout_seconds:g} s"
