"""The S3 plane's credential lookup: sealed secrets, their cache, and Vault outages."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import anyio
import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import Connection, update

from blindstore import provision
from blindstore.backends.memory import MemoryBackend
from blindstore.catalog.base import AccessKey
from blindstore.catalog.schema import access_keys
from blindstore.catalog.sql import SqlCatalog
from blindstore.errors import InvalidAccessKeyId, KeyServiceUnavailable
from blindstore.gateway import Gateway
from blindstore.server import wire
from blindstore.server.request import S3Request
from blindstore.server.wire import Authenticator
from tests.unit.keys.fakes import OutageKeyWrapper

SIGNED_AT = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _frozen_botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        botocore.auth,
        "get_current_datetime",
        lambda remove_tzinfo=True: SIGNED_AT.replace(tzinfo=None),
    )


class MonotonicClock:
    """Stands for ``time.monotonic`` in the credential cache."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class World:
    catalog: SqlCatalog
    keys: OutageKeyWrapper
    gateway: Gateway
    auth: Authenticator
    clock: MonotonicClock

    def run(self, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        return anyio.run(fn, *args)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    clock = MonotonicClock()
    monkeypatch.setattr(wire.time, "monotonic", clock)
    catalog = SqlCatalog("sqlite://")
    keys = OutageKeyWrapper()
    gateway = Gateway(catalog, keys, {"memory": MemoryBackend()}, default_backend="memory")
    auth = Authenticator(gateway, clock=SIGNED_AT.timestamp, region="us-east-1")
    yield World(catalog, keys, gateway, auth, clock)
    anyio.run(gateway.close)


def _request(access_key_id: str, secret: str) -> S3Request:
    request = AWSRequest(method="GET", url="http://127.0.0.1:9000/bucket/key")
    S3SigV4Auth(Credentials(access_key_id, secret), "s3", "us-east-1").add_auth(request)
    headers = {name.lower(): str(value) for name, value in request.headers.items()}
    headers["host"] = "127.0.0.1:9000"
    return S3Request(
        method="GET",
        raw_path="/bucket/key",
        raw_query="",
        query={},
        headers=headers,
        host="127.0.0.1:9000",
        bucket="bucket",
        key="key",
        client="127.0.0.1",
    )


def _tenant(world: World, name: str = "clinic") -> provision.NewCredentials:
    return world.run(provision.create_tenant, world.catalog, world.keys, name)


def test_a_sealed_secret_authenticates_and_the_row_holds_no_secret(world: World) -> None:
    made = _tenant(world)
    stored = world.run(world.catalog.get_access_key, made.access_key_id)

    assert stored is not None
    assert stored.secret_key is None
    assert stored.sealed_secret is not None
    assert made.secret_key not in stored.sealed_secret
    ctx = world.run(world.auth.authenticate, _request(made.access_key_id, made.secret_key))
    assert ctx.principal.tenant.name == "clinic"


def test_an_uncached_key_while_vault_is_down_is_service_unavailable(world: World) -> None:
    made = _tenant(world)
    world.keys.down = True
    with pytest.raises(KeyServiceUnavailable):
        world.run(world.auth.authenticate, _request(made.access_key_id, made.secret_key))


def test_a_known_key_keeps_working_through_a_vault_outage(world: World) -> None:
    made = _tenant(world)
    request = _request(made.access_key_id, made.secret_key)
    world.run(world.auth.authenticate, request)
    calls = world.keys.attempts

    world.keys.down = True
    world.clock.now += 3600  # far past the cache's lifetime: the catalog is read again
    assert world.run(world.auth.authenticate, request).principal.access_key_id == made.access_key_id
    assert world.keys.attempts == calls


def test_a_revoked_key_is_refused_even_while_vault_is_down(world: World) -> None:
    made = _tenant(world)
    request = _request(made.access_key_id, made.secret_key)
    world.run(world.auth.authenticate, request)
    world.run(world.catalog.delete_access_key, made.access_key_id)
    world.keys.down = True
    world.clock.now += wire.CREDENTIAL_CACHE_SECONDS + 1
    with pytest.raises(InvalidAccessKeyId):
        world.run(world.auth.authenticate, request)


def test_a_secret_left_in_clear_is_never_trusted(world: World) -> None:
    made = _tenant(world)
    planted = AccessKey("BSPLANTED", None, made.tenant.tenant_id, 1.0, secret_key="in-clear")
    world.run(world.catalog.add_access_key, planted)
    with pytest.raises(InvalidAccessKeyId):
        world.run(world.auth.authenticate, _request("BSPLANTED", "in-clear"))


def test_a_sealed_secret_copied_onto_another_key_row_is_refused(world: World) -> None:
    victim = _tenant(world)
    other = world.run(provision.add_access_key, world.catalog, world.keys, victim.tenant)
    victim_row = world.run(world.catalog.get_access_key, victim.access_key_id)
    assert victim_row is not None

    async def copy_sealed() -> None:
        # A catalog writer gives the other key the victim's sealed secret.
        def work(conn: Connection) -> None:
            conn.execute(
                update(access_keys)
                .where(access_keys.c.access_key_id == other.access_key_id)
                .values(sealed_secret=victim_row.sealed_secret)
            )

        await world.catalog._write(work)  # the catalog writer's own SQL, not an API call

    world.run(copy_sealed)
    with pytest.raises(InvalidAccessKeyId):
        world.run(world.auth.authenticate, _request(other.access_key_id, victim.secret_key))
