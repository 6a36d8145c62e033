"""moto's standalone S3 server, started once per test session (the AWS S3 stand-in).

Test modules import the fixture (``from tests.services.moto import moto_server  # noqa:
F401``). pytest makes one fixture definition per importing module, so the server itself is kept
in the session's stash: however many modules import it, one process runs, and it is stopped
when the session ends.
"""

from __future__ import annotations

import pytest

from blindstore.devtools.moto import MotoServer, start_moto

_SERVER = pytest.StashKey[MotoServer]()


@pytest.fixture(scope="session")
def moto_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MotoServer:
    """The session's moto server (in memory; any credentials are accepted)."""
    config = request.config
    server = config.stash.get(_SERVER, None)
    if server is None:
        server = start_moto(workdir=tmp_path_factory.mktemp("moto"))
        config.stash[_SERVER] = server
        config.add_cleanup(server.stop)
    return server
