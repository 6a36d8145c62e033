"""SeaweedFS (``weed server`` with its S3 gateway), started once per test session.

The on-premise S3 stand-in. Test modules import the fixture (``from tests.services.seaweedfs
import seaweedfs  # noqa: F401``); as with moto, the server lives in the session's stash so that
one process serves every importing module, stopped when the session ends.
"""

from __future__ import annotations

from functools import partial

import pytest

from blindstore.devtools.seaweedfs import SeaweedFSServer, start_seaweedfs

_SERVER = pytest.StashKey[SeaweedFSServer]()


@pytest.fixture(scope="session")
def seaweedfs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> SeaweedFSServer:
    """The session's SeaweedFS; its raw storage is under ``data_dir``."""
    config = request.config
    server = config.stash.get(_SERVER, None)
    if server is None:
        server = start_seaweedfs(workdir=tmp_path_factory.mktemp("seaweedfs"))
        config.stash[_SERVER] = server
        # Scratch data: no need to wait out SeaweedFS's slow graceful shutdown.
        config.add_cleanup(partial(server.stop, timeout=1.0))
    return server
