"""Session fixtures: a real nats-server and a real PostgreSQL, started once per test session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext
from orrery.runtime import bus
from orrery.runtime.clock import UUID7
from orrery.runtime.infra.nats_server import NatsServer
from orrery.runtime.infra.postgres_server import PostgresServer


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nats_server(servers_dir: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(servers_dir / "nats") as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_server(servers_dir: Path) -> AsyncIterator[PostgresServer]:
    async with PostgresServer(servers_dir / "postgres") as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await bus.connect(nats_server.url, "orrery-tests")
    yield client
    await client.close()


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture
def unique() -> str:
    """A fresh token for names (streams, schemas, subjects) so tests never share state."""
    return UUID7().new().replace("-", "")[-12:]


@pytest_asyncio.fixture(loop_scope="session")
async def database_url(postgres_server: PostgresServer, unique: str) -> AsyncIterator[str]:
    """A fresh database per test: projections of one test never see another's tables."""
    name = f"t_{unique}"
    admin = await asyncpg.connect(postgres_server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield postgres_server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest_asyncio.fixture(loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=6)
    assert p is not None
    yield p
    await p.close()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_inherited_orrery_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure what they need; a developer's ORRERY_* variables must not leak in."""
    for key in list(os.environ):
        if key.startswith("ORRERY_"):
            monkeypatch.delenv(key)
