"""The live projection runner: one durable consumer per projection, one processor at a time.

Exactly-once effect: each batch is applied in one transaction that also advances the checkpoint,
and events at or below the checkpoint are skipped, so a redelivery is harmless. The durable
consumer is recreated from the checkpoint at every start, because it may hold deliveries
that were never committed (the process died mid-batch) and must not skip past them. A Postgres
advisory lock makes sure only one process runs a projection at a time (the Axon lesson: a
tracking position claimed by one processor)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from orrery.events import Envelope, Event, Registry, subjects
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE, decode_msg
from orrery.runtime.projections import checkpoints
from orrery.runtime.projections.base import Projection
from orrery.runtime.projections.rebuild import rebuild

log = logging.getLogger(__name__)

PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    OSError,
    asyncio.TimeoutError,
)


def consumer_name(projection: Projection) -> str:
    return f"proj-{subjects.token(projection.schema)}-{subjects.token(projection.name)}"


async def apply_batch(
    conn: asyncpg.Connection,
    projection: Projection,
    schema: str,
    events: Sequence[Envelope[Event]],
) -> int:
    """Apply in one transaction with the checkpoint; returns how many were new."""
    async with conn.transaction():
        last = await checkpoints.lock_and_read(conn, projection)
        fresh = [e for e in events if e.sequence > last]
        if fresh:
            await projection.apply(conn, schema, fresh)
            await checkpoints.advance(conn, projection, fresh[-1].sequence)
    return len(fresh)


@dataclass
class ProjectionRunner:
    pool: asyncpg.Pool
    js: JetStreamContext
    projection: Projection
    registry: Registry
    batch: int = 500
    state: str = "starting"
    error: str = ""
    last_seq: int = 0
    _lock_conn: asyncpg.Connection | None = field(default=None, repr=False)

    async def run(self, stop: asyncio.Event) -> None:
        p = self.projection
        try:
            while not stop.is_set():
                try:
                    if await self._claim(stop):
                        await self._prepare()
                        await self._consume(stop)
                except (*PG_UNAVAILABLE, *NATS_UNAVAILABLE) as exc:
                    self.state, self.error = "retrying", repr(exc)
                    log.warning("projection %s.%s: %r; retrying", p.schema, p.name, exc)
                    await self._release()
                    await _sleep_unless(stop, 1.0)
        finally:
            await self._release()

    async def _claim(self, stop: asyncio.Event) -> bool:
        """Hold the projection's advisory lock on a dedicated connection for the whole run.
        False if asked to stop before getting it."""
        if self._lock_conn is not None and not self._lock_conn.is_closed():
            return True
        key = f"orrery.projection:{self.projection.schema}.{self.projection.name}"
        self._lock_conn = await self.pool.acquire()
        while not stop.is_set():
            if await self._lock_conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
                return True
            self.state = "standby"
            await _sleep_unless(stop, 1.0)
        return False

    async def _release(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None:
            try:
                await self.pool.release(conn)  # releasing resets the session: lock dropped
            except PG_UNAVAILABLE:
                conn.terminate()

    async def _prepare(self) -> None:
        p = self.projection
        async with self.pool.acquire() as conn:
            stored = await checkpoints.ensure(conn, p)
        if stored is not None and stored != p.version:
            self.state = "rebuilding"
            log.info("projection %s.%s v%s -> v%s: rebuilding", p.schema, p.name, stored, p.version)
            await rebuild(self.pool, self.js, p, self.registry)
        async with self.pool.acquire() as conn:
            found = await checkpoints.read(conn, p)
        self.last_seq = found[1] if found else 0
        name = consumer_name(p)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self.js.delete_consumer(p.stream, name)
        start: dict[str, object] = {"deliver_policy": DeliverPolicy.ALL}
        if self.last_seq > 0:
            start = {
                "deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
                "opt_start_seq": self.last_seq + 1,
            }
        await self.js.add_consumer(
            p.stream,
            ConsumerConfig(
                durable_name=name,
                filter_subjects=list(p.subjects),
                ack_policy=AckPolicy.ALL,
                ack_wait=60.0,
                max_ack_pending=self.batch * 4,
                **start,  # type: ignore[arg-type]
            ),
        )

    async def _consume(self, stop: asyncio.Event) -> None:
        p = self.projection
        sub = await self.js.pull_subscribe_bind(durable=consumer_name(p), stream=p.stream)
        self.state, self.error = "running", ""
        while not stop.is_set():
            try:
                msgs = await sub.fetch(self.batch, timeout=1.0)
            except TimeoutError:  # nats-py raises both its own and asyncio's: nothing new
                continue
            if msgs:
                await self._apply_until_done(msgs, stop)

    async def _apply_until_done(self, msgs: list[Msg], stop: asyncio.Event) -> None:
        """Never move past a batch that did not commit: retry it here until it does."""
        p = self.projection
        delay = 0.2
        while True:
            try:
                events = [decode_msg(self.registry, m) for m in msgs]
                async with self.pool.acquire() as conn:
                    await apply_batch(conn, p, p.schema, events)
                break
            except PG_UNAVAILABLE:
                raise  # handled by run(): reconnect, and restart from the checkpoint
            except Exception as exc:  # noqa: BLE001 - a stalled projection must say why
                self.state, self.error = "stalled", repr(exc)
                log.error(
                    "projection %s.%s stalled at seq %s: %r",
                    p.schema,
                    p.name,
                    msgs[0].metadata.sequence.stream,
                    exc,
                )
                if await _sleep_unless(stop, delay):
                    return
                delay = min(delay * 2, 10.0)
        self.state, self.error = "running", ""
        self.last_seq = msgs[-1].metadata.sequence.stream
        await msgs[-1].ack()  # AckPolicy.ALL: acks the whole batch


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early when asked to stop; True if stopping."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True
