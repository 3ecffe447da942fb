"""Where the CLI finds NATS and PostgreSQL: the environment, else the running stack."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
from nats.js import JetStreamContext
from orrery.cli import state
from orrery.runtime import bus
from orrery.runtime.errors import ConfigurationError
from orrery.runtime.service import create_pool
from orrery.runtime.settings import Settings


def urls(settings: Settings) -> tuple[str, str]:
    running = state.read(settings.home)
    nats_url = settings.nats_url or (running.nats_url if running else None)
    db_url = settings.database_url or (running.database_url if running else None)
    if not nats_url or not db_url:
        raise ConfigurationError(
            "Orrery is not running: start it with `orrery up`, or set ORRERY_NATS_URL and"
            " ORRERY_DATABASE_URL"
        )
    return nats_url, db_url


@contextlib.asynccontextmanager
async def connections(settings: Settings) -> AsyncIterator[tuple[JetStreamContext, asyncpg.Pool]]:
    nats_url, db_url = urls(settings)
    nc = await bus.connect(nats_url, "orrery-cli", attempts=2)
    try:
        pool = await create_pool(db_url)
        try:
            yield nc.jetstream(), pool
        finally:
            await pool.close()
    finally:
        await nc.close()
