"""Readiness probes: which dependency is down, probed once per cache period, bounded in time."""

from __future__ import annotations

import anyio
import pytest

from blindstore.errors import KeyServiceUnavailable, ServiceUnavailable
from blindstore.readiness import Readiness

pytestmark = pytest.mark.anyio


class Dependency:
    """A dependency that answers, refuses or hangs, counting the probes it gets."""

    def __init__(self) -> None:
        self.probes = 0
        self.error: Exception | None = None
        self.hang = False

    async def probe(self) -> None:
        self.probes += 1
        if self.hang:
            await anyio.sleep(60)
        if self.error is not None:
            raise self.error


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_ready_when_every_dependency_answers() -> None:
    catalog, vault = Dependency(), Dependency()
    readiness = Readiness({"catalog": catalog.probe, "vault": vault.probe})
    assert await readiness.failures() == {}


async def test_a_dependency_that_refuses_is_named_with_a_reason() -> None:
    catalog, vault = Dependency(), Dependency()
    vault.error = KeyServiceUnavailable("key service unreachable: ConnectionError")
    readiness = Readiness({"catalog": catalog.probe, "vault": vault.probe})
    failures = await readiness.failures()
    assert list(failures) == ["vault"]
    assert "KeyServiceUnavailable" in failures["vault"]
    # The message of the error (hosts, URLs) is not repeated.
    assert "ConnectionError" not in failures["vault"]


async def test_a_dependency_that_hangs_is_down_after_the_timeout() -> None:
    catalog = Dependency()
    catalog.hang = True
    readiness = Readiness({"catalog": catalog.probe}, timeout_seconds=0.05)
    with anyio.fail_after(5):
        failures = await readiness.failures()
    assert failures == {"catalog": "no answer within 0.05 s"}


async def test_probes_are_reused_within_the_cache_period() -> None:
    clock, catalog = Clock(), Dependency()
    readiness = Readiness({"catalog": catalog.probe}, cache_seconds=1.0, clock=clock)
    for _ in range(5):
        assert await readiness.failures() == {}
    assert catalog.probes == 1
    catalog.error = ServiceUnavailable()
    clock.now += 0.5
    assert await readiness.failures() == {}
    clock.now += 0.6
    assert "catalog" in await readiness.failures()
    assert catalog.probes == 2
