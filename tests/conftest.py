"""Real servers for the tests, started from pip-installed binaries on free ports.

Session-scoped, started lazily (only when a test asks), one each:

- `postgres_admin_url`: admin URL of a PostgreSQL server (`postgres` database, trust auth);
- `redis_url`: `redis://` URL of a Valkey server;
- `nats_url`: `nats://` URL of a NATS server with JetStream.

Each can point at an external server instead: `TESSERA_TEST_DATABASE_URL` (an admin URL; the
server must allow at least 200 connections), `TESSERA_TEST_REDIS_URL`, `TESSERA_TEST_NATS_URL`.
Servers already running on the standard ports are never used.

Function-scoped:

- `database_url`: a fresh, empty database for the test (dropped afterwards), SERIALIZABLE;
- `fresh_nats`: the test's own NATS server (a `RunningServer` it may `kill()` and `restart()`),
  always local, even when `TESSERA_TEST_NATS_URL` is set.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import writer_support

from global_writer.settings import Settings
from tessera_ops.processes import ServiceProcess, start_writer
from tessera_ops.servers import (
    RunningServer,
    create_database,
    drop_database,
    start_nats,
    start_postgres,
    start_valkey,
)

# Keeps concurrent runs against one external server from dropping each other's databases.
_RUN_TOKEN = secrets.token_hex(3)


def _external(variable: str) -> str | None:
    return os.environ.get(variable) or None


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = _external("TESSERA_TEST_DATABASE_URL")
    if external is not None:
        yield external
        return
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = _external("TESSERA_TEST_REDIS_URL")
    if external is not None:
        yield external
        return
    server = start_valkey(tmp_path_factory.mktemp("valkey"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = _external("TESSERA_TEST_NATS_URL")
    if external is not None:
        yield external
        return
    server = start_nats(tmp_path_factory.mktemp("nats"))
    try:
        yield server.url
    finally:
        server.stop()


def _database_name(node: pytest.Item) -> str:
    """`t_<test name>_<hash>`: readable, unique per test and run, within 63 characters."""
    slug = re.sub(r"[^a-z0-9]+", "_", node.name.lower()).strip("_")[:40]
    digest = hashlib.sha256(f"{_RUN_TOKEN}:{node.nodeid}".encode()).hexdigest()[:10]
    return f"t_{slug}_{digest}"


@pytest.fixture
def database_url(request: pytest.FixtureRequest, postgres_admin_url: str) -> Iterator[str]:
    node = request.node
    assert isinstance(node, pytest.Item)
    name = _database_name(node)
    url = create_database(postgres_admin_url, name)
    try:
        yield url
    finally:
        drop_database(postgres_admin_url, name)


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_nats(tmp_path / "nats")
    try:
        yield server
    finally:
        server.stop()


# --- the global writer (helpers in tests/writer_support.py) ---


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def writer_settings(database_url: str, redis_url: str, nats_url: str) -> Settings:
    return writer_support.settings(database_url, redis_url, nats_url)


@pytest.fixture
def writer_process(writer_settings: Settings, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A real writer: `python -m global_writer` served by Granian on a free port."""
    service = start_writer(tmp_path / "writer", writer_support.writer_env(writer_settings))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
async def writer_api(
    writer_process: ServiceProcess, writer_settings: Settings
) -> AsyncIterator[writer_support.WriterApi]:
    limits = httpx.Limits(max_connections=1_000, max_keepalive_connections=1_000)
    async with httpx.AsyncClient(
        base_url=writer_process.url, limits=limits, timeout=30.0
    ) as client:
        yield writer_support.WriterApi(client, writer_settings)


# --- NATS hub and region (JetStream domains joined by a leaf-node connection) ---
# Imports here rather than at the top: this section is appended to a file others edit.

import asyncio  # noqa: E402

from nats.aio.client import Client as NatsClient  # noqa: E402

from tessera.jetstream import (  # noqa: E402
    Definition,
    ensure_jetstream,
    load_definitions,
    load_regional_definitions,
    wait_for_mirrors,
)
from tessera_ops.servers import (  # noqa: E402
    NatsDomainServer,
    start_nats_hub,
    start_nats_region,
)

# The region every two-domain test gets; the mirror definitions name the hub domain "hub".
REGION_DOMAIN = "eu"
# A mirror reaches its source ≈0.2 s after it is created on loopback.
MIRRORS_CONNECTED_WITHIN_S = 10.0


def _apply_definitions(url: str, definitions: list[Definition]) -> None:
    """Create the streams, then wait for any mirror's first contact with its source: a test
    that cut the link before that would wait 30 s for the mirror's lost request."""

    async def main() -> None:
        nc = NatsClient()
        await nc.connect(url, connect_timeout=5, allow_reconnect=False)
        try:
            js = nc.jetstream()
            await ensure_jetstream(js, definitions)
            await wait_for_mirrors(js, definitions, timeout_s=MIRRORS_CONNECTED_WITHIN_S)
        finally:
            await nc.close()

    asyncio.run(main())


@pytest.fixture
def nats_hub(tmp_path: Path) -> Iterator[NatsDomainServer]:
    """The test's own hub (`nats/server/hub.conf`, domain `hub`) with `SEATS` and the `seatmap`
    bucket; `leafnode_url` is where regions connect. It may be stopped, killed and restarted."""
    server = start_nats_hub(tmp_path / "nats-hub")
    try:
        _apply_definitions(server.url, load_definitions())
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_region(tmp_path: Path, nats_hub: NatsDomainServer) -> Iterator[NatsDomainServer]:
    """Region `eu` (`nats/server/region.conf`), leaf-connected to `nats_hub`, holding the
    mirrors `SEATS` and `KV_seatmap` of `nats/jetstream/regional/`."""
    server = start_nats_region(
        tmp_path / f"nats-{REGION_DOMAIN}", domain=REGION_DOMAIN, hub=nats_hub
    )
    try:
        _apply_definitions(server.url, load_regional_definitions(hub_domain=nats_hub.domain))
        yield server
    finally:
        server.stop()


# --- edge tests: a writer and two read nodes per test module (helpers in tests/edge_support.py) ---

from edge_support import EdgeStack, open_edge_stack  # noqa: E402


@pytest.fixture(scope="module")
def edge_stack(
    postgres_admin_url: str, redis_url: str, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EdgeStack]:
    """A writer (own database) and two regional read nodes, shared by a test module; its
    edges are started by the tests (`EdgeStack.start_edge`) and stopped with it."""
    name = f"t_edge_{secrets.token_hex(4)}"
    database_url = create_database(postgres_admin_url, name)
    try:
        yield from open_edge_stack(
            database_url, redis_url, nats_url, tmp_path_factory.mktemp("edge")
        )
    finally:
        drop_database(postgres_admin_url, name)
