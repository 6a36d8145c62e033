"""Fixtures of the hostile suite: the installed `blindstore serve` as a subprocess.

``served`` (module scope) is one production-style gateway with a bucket, a canary object and a
ledger of acknowledged PUTs; modules that need other limits start their own with
``tests.hostile.served.serve_gateway``. After every test, ``gateways_survive`` checks every
gateway still running: the same process (unless the test restarted it on purpose) answers the
canary and every ledger entry byte-identically.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blindstore.devtools.openbao import OpenBaoServer
from tests.hostile.served import LIVE, Served, serve_gateway


@pytest.fixture(scope="module")
def served(openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    gateway = serve_gateway(tmp_path_factory.mktemp("served"), openbao)
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def gateways_survive() -> Iterator[None]:
    before = {id(gateway): (gateway.pid, gateway.restarts) for gateway in LIVE}
    yield
    for gateway in list(LIVE):
        pid, restarts = before.get(id(gateway), (gateway.pid, gateway.restarts))
        if gateway.restarts == restarts:
            assert gateway.pid == pid, "the gateway process was replaced"
        gateway.assert_intact()
