"""What a service's reactor (side effects driven by its own events) needs around its work: one
claimant at a time, and the metadata that ties an outcome to the event that caused it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
from nats.js import JetStreamContext
from orrery.events import Envelope, Event, EventMeta, Registry
from orrery.events.errors import EventsError
from orrery.runtime.errors import RuntimeFailure
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE, decode_msg

log = logging.getLogger(__name__)

STANDBY_POLL_S = 2.0
RETRYABLE: tuple[type[BaseException], ...] = (RuntimeFailure, *NATS_UNAVAILABLE)


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


async def consume(  # noqa: PLR0917 - where to read, what to do, when to stop
    js: JetStreamContext,
    stream: str,
    durable: str,
    registry: Registry,
    react: Callable[[Envelope[Event]], Awaitable[None]],
    stop: asyncio.Event,
) -> None:
    """Feed each event of a durable pull consumer to ``react`` in log order; ack once it
        returns. A retryable failure (NATS or a runtime failure) naks for redelivery; an event that
        cannot be decoded is logged and acked (redelivery could not change it); any other failure is
    logged and retried slowly rather than ending the service."""
    sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
    while not stop.is_set():
        try:
            msgs = await sub.fetch(64, timeout=1.0)
        except TimeoutError:
            continue
        except NATS_UNAVAILABLE as exc:
            log.warning("%s: fetch failed, retrying: %r", durable, exc)
            await asyncio.sleep(0.5)
            continue
        for msg in msgs:
            try:
                envelope = decode_msg(registry, msg)
            except EventsError as exc:
                log.error("%s cannot decode %s: %r", durable, msg.subject, exc)
                with contextlib.suppress(*NATS_UNAVAILABLE):
                    await msg.ack()
                continue
            try:
                await react(envelope)
            except RETRYABLE as exc:
                log.warning(
                    "%s: reaction to %s failed, will retry: %r", durable, envelope.type, exc
                )
                with contextlib.suppress(*NATS_UNAVAILABLE):
                    await msg.nak(delay=1.0)
                continue
            except Exception:  # a bug: keep the event and the service, retry slowly
                log.exception("%s: reaction to %s failed", durable, envelope.type)
                with contextlib.suppress(*NATS_UNAVAILABLE):
                    await msg.nak(delay=5.0)
                continue
            with contextlib.suppress(*NATS_UNAVAILABLE):
                await msg.ack()


async def consume_claimed(  # noqa: PLR0917 - the lock, then what consume() needs
    pool: asyncpg.Pool,
    key: str,
    js: JetStreamContext,
    stream: str,
    durable: str,
    registry: Registry,
    react: Callable[[Envelope[Event]], Awaitable[None]],
    stop: asyncio.Event,
) -> None:
    """``consume`` while holding advisory lock ``key``: one instance reacts at a time."""
    async with claimed(pool, key, stop) as held:
        if held:
            await consume(js, stream, durable, registry, react, stop)
