"""Rebuild = replay the log into a fresh copy of a projection's tables, then switch them in.

The live tables keep serving reads and the live runner keeps applying while the copy is built.
The switch is one transaction that locks the checkpoint row (pausing the live runner), replays
whatever the live runner applied meanwhile into the copy, swaps the tables and sets the
checkpoint, so readers see either the old tables or the new ones, never a mix."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Iterator

import asyncpg
from nats.js import JetStreamContext
from orrery.events import Envelope, Event, Registry
from orrery.runtime.errors import RuntimeFailure
from orrery.runtime.eventstore.jetstream import decode_msg
from orrery.runtime.projections import checkpoints
from orrery.runtime.projections.base import Projection
from orrery.runtime.projections.replay import replay, stream_last_seq

Progress = Callable[[int, int], None]


class RebuildInProgress(RuntimeFailure):
    code = "projection.rebuild_in_progress"


_GC_THRESHOLD = 50_000
_gc_depth = 0


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often while replaying.

    A replay allocates a dozen short-lived objects per event; with the default generation-0
    threshold (700) the collector runs every ~50 events and keeps rescanning the messages nats-py
    has buffered. Raising the threshold for the rebuild (restored afterwards) made rebuilds about
    a quarter faster in ``bench/events.py``. Nothing in a replay is a reference cycle that needs
    the collector sooner."""
    global _gc_depth  # noqa: PLW0603 - process-wide setting, restored by the outermost user
    saved = gc.get_threshold()
    _gc_depth += 1
    if _gc_depth == 1:
        gc.set_threshold(max(saved[0], _GC_THRESHOLD), saved[1], saved[2])
    try:
        yield
    finally:
        _gc_depth -= 1
        if _gc_depth == 0:
            gc.set_threshold(*saved)


def scratch_schema(projection: Projection) -> str:
    return f"{projection.schema}__rebuild_{projection.name}"[:63]


async def _replay_into(
    conn: asyncpg.Connection,
    js: JetStreamContext,
    projection: Projection,
    registry: Registry,
    schema: str,
    *,
    after: int,
    until: int,
    on_progress: Progress | None,
    transaction_per_batch: bool,
) -> int:
    """Apply events ``after < seq <= until`` to the tables in ``schema``; returns the count.

    Reading and decoding the next batch overlaps with PostgreSQL writing the previous one: a
    writer task drains a short queue, in order, on the one connection."""
    count = 0
    ready: asyncio.Queue[list[Envelope[Event]] | None] = asyncio.Queue(maxsize=2)

    async def write() -> None:
        while (events := await ready.get()) is not None:
            if transaction_per_batch:
                async with conn.transaction():
                    await projection.apply(conn, schema, events)
            else:
                await projection.apply(conn, schema, events)

    async with asyncio.TaskGroup() as tg:
        writer = tg.create_task(write())
        try:
            async for msgs in replay(
                js,
                projection.stream,
                projection.subjects,
                after=after,
                until=until,
                on_progress=on_progress,
            ):
                events = [decode_msg(registry, m) for m in msgs]
                count += len(events)
                await _put(ready, events, writer)
        finally:
            if not writer.done():
                await _put(ready, None, writer)
    return count


async def _put(
    ready: asyncio.Queue[list[Envelope[Event]] | None],
    item: list[Envelope[Event]] | None,
    writer: asyncio.Task[None],
) -> None:
    """Queue for the writer, unless it has failed (its error then ends the TaskGroup)."""
    putting = asyncio.ensure_future(ready.put(item))
    await asyncio.wait({putting, writer}, return_when=asyncio.FIRST_COMPLETED)
    if not putting.done():
        putting.cancel()


async def rebuild(
    pool: asyncpg.Pool,
    js: JetStreamContext,
    projection: Projection,
    registry: Registry,
    on_progress: Progress | None = None,
) -> int:
    """Rebuild ``projection`` from its stream; returns the number of events replayed."""
    p, scratch = projection, scratch_schema(projection)
    key = f"orrery.rebuild:{p.schema}.{p.name}"
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
            raise RebuildInProgress(f"{p.schema}.{p.name} is already being rebuilt")
        try:
            await checkpoints.ensure(conn, p)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{scratch}" CASCADE')
            await conn.execute(f'CREATE SCHEMA "{scratch}"')
            for statement in p.ddl(scratch):
                await conn.execute(statement)
            target = await stream_last_seq(js, p.stream)
            with fewer_collections():
                count = await _replay_into(
                    conn,
                    js,
                    p,
                    registry,
                    scratch,
                    after=0,
                    until=target,
                    on_progress=on_progress,
                    transaction_per_batch=True,
                )
                count += await _switch(conn, js, p, registry, scratch, rebuilt=target)
        finally:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{scratch}" CASCADE')
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", key)
    return count


async def _switch(
    conn: asyncpg.Connection,
    js: JetStreamContext,
    p: Projection,
    registry: Registry,
    scratch: str,
    *,
    rebuilt: int,
) -> int:
    async with conn.transaction():
        live = await checkpoints.lock_and_read(conn, p)
        extra = 0
        if live > rebuilt:  # the live runner got further while we replayed: catch up
            extra = await _replay_into(
                conn,
                js,
                p,
                registry,
                scratch,
                after=rebuilt,
                until=live,
                on_progress=None,
                transaction_per_batch=False,
            )
            rebuilt = live
        for table in p.tables:
            await conn.execute(f"DROP TABLE IF EXISTS {checkpoints.q(p.schema, table)} CASCADE")
            await conn.execute(
                f'ALTER TABLE {checkpoints.q(scratch, table)} SET SCHEMA "{p.schema}"'
            )
        await conn.execute(
            f"UPDATE {checkpoints.q(p.schema, checkpoints.TABLE)} SET last_seq = $2,"
            " version = $3, rebuilt_at = now(), updated_at = now() WHERE name = $1",
            p.name,
            rebuilt,
            p.version,
        )
    return extra
