"""What a service's reactor (side effects driven by its own events) needs around its work: one
claimant at a time, and the metadata that ties an outcome to the event that caused it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
from orrery.events import Envelope, Event, EventMeta

STANDBY_POLL_S = 2.0


def follow_up(trigger: Envelope[Event]) -> EventMeta:
    """Metadata for what ``trigger`` caused: same actor, correlation and trace, caused by it."""
    return EventMeta(
        occurred_at=datetime.now(UTC),
        actor=trigger.actor,
        correlation_id=trigger.correlation_id,
        causation_id=trigger.event_id,
        trace=trigger.trace,
    )


@contextlib.asynccontextmanager
async def claimed(
    pool: asyncpg.Pool,
    key: str,
    stop: asyncio.Event,
    on_standby: Callable[[], None] = lambda: None,
) -> AsyncIterator[bool]:
    """Hold PostgreSQL advisory lock ``key`` on a dedicated connection while the block runs:
    yields True once held (waiting in standby while another instance holds it), False if
    ``stop`` is set first. The lock goes with the connection if the process dies."""
    async with pool.acquire() as conn:
        while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
            on_standby()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STANDBY_POLL_S):
                    await stop.wait()
            if stop.is_set():
                yield False
                return
        try:
            yield True
        finally:
            with contextlib.suppress(Exception):
                await conn.fetchval("SELECT pg_advisory_unlock(hashtext($1))", key)
