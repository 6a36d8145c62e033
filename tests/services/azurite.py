"""Azurite's blob service, started once per test session (the Azure Blob Storage stand-in).

Test modules import the fixture (``from tests.services.azurite import azurite_server  # noqa:
F401``) and request it as ``azurite`` (its pytest name: parameters then do not shadow the import).
pytest makes one fixture definition per importing module, so the server is kept in the
session's stash: however many modules import it, one process runs, stopped when the session
ends. Its data lives on disk (``server.data_dir``) and every request's headers are logged
(``server.debug_log_path``), so that the blindness tests can read what Azure would hold and see.
"""

from __future__ import annotations

import pytest

from blindstore.devtools.azurite import AzuriteServer, start_azurite

_SERVER = pytest.StashKey[AzuriteServer]()


@pytest.fixture(scope="session", name="azurite")
def azurite_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AzuriteServer:
    """The session's Azurite (development account ``devstoreaccount1``)."""
    config = request.config
    server = config.stash.get(_SERVER, None)
    if server is None:
        server = start_azurite(workdir=tmp_path_factory.mktemp("azurite"), debug=True)
        config.stash[_SERVER] = server
        config.add_cleanup(server.stop)
    return server
