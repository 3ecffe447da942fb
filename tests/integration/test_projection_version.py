"""A projection whose version changed is rebuilt from the log when its runner starts."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import asyncpg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from orrery.canvas.projections.boards import BoardsProjection
from orrery.events import EventMeta, default_registry
from orrery.events.canvas import BoardCreated, BoardRenamed
from orrery.runtime.eventstore.jetstream import JetStreamEventStore
from orrery.runtime.projections import checkpoints
from orrery.runtime.projections.runner import ProjectionRunner


async def run_until(
    pool: asyncpg.Pool, js: JetStreamContext, projection: BoardsProjection, last_seq: int
) -> ProjectionRunner:
    stop = asyncio.Event()
    runner = ProjectionRunner(pool, js, projection, default_registry())
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(20):
            while runner.last_seq < last_seq or runner.state != "running":
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    return runner


async def test_version_bump_rebuilds_at_start(
    js: JetStreamContext, pool: asyncpg.Pool, unique: str
) -> None:
    prefix, stream = f"c{unique}", f"VERSION_{unique}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.evt.>"]))
    store = JetStreamEventStore(js, stream)
    meta = EventMeta(occurred_at=datetime.now(UTC))
    subject = f"{prefix}.evt.board.b1"
    await store.append(
        subject,
        BoardCreated(board_id="b1", name="A", slug="a"),
        expected_seq=0,
        msg_id="e1",
        meta=meta,
    )
    await store.append(
        subject, BoardRenamed(board_id="b1", name="B"), expected_seq=1, msg_id="e2", meta=meta
    )
    v1 = dataclasses.replace(
        BoardsProjection(),
        schema=f"canvas_{unique}",
        stream=stream,
        subjects=(f"{prefix}.evt.board.*",),
    )
    await run_until(pool, js, v1, 2)
    # Damage the live table as a buggy v1 could have: v2 must not inherit it.
    await pool.execute(f"UPDATE \"{v1.schema}\".boards SET name = 'wrong'")

    v2 = dataclasses.replace(v1, version=v1.version + 1)
    await run_until(pool, js, v2, 2)
    async with pool.acquire() as conn:
        assert await checkpoints.read(conn, v2) == (v2.version, 2)
        rebuilt_at = await conn.fetchval(
            f'SELECT rebuilt_at FROM "{v2.schema}".orrery_projections WHERE name = $1', v2.name
        )
        names = await conn.fetch(f'SELECT board_id, name FROM "{v2.schema}".boards')
    assert rebuilt_at is not None
    assert [tuple(r) for r in names] == [("b1", "B")]
