"""Two processes running the same projection: one applies, the other stands by and takes over
when the first goes away, with every event applied once."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import asyncpg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from orrery.canvas.projections.boards import BoardsProjection
from orrery.events import EventMeta, default_registry
from orrery.events.canvas import BoardCreated
from orrery.runtime.clock import UUID7
from orrery.runtime.eventstore.jetstream import JetStreamEventStore
from orrery.runtime.projections.runner import ProjectionRunner

ids = UUID7()


async def append_boards(store: JetStreamEventStore, prefix: str, names: range) -> None:
    for i in names:
        await store.append(
            f"{prefix}.evt.board.b{i}",
            BoardCreated(board_id=f"b{i}", name=f"n{i}", slug=f"s{i}"),
            expected_seq=0,
            msg_id=f"m{i}",
            meta=EventMeta(occurred_at=datetime.now(UTC)),
        )


async def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_one_claimant_at_a_time(js: JetStreamContext, database_url: str, unique: str) -> None:
    prefix, stream = f"c{unique}", f"CLAIM_{unique}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.evt.>"]))
    store = JetStreamEventStore(js, stream)
    projection = dataclasses.replace(
        BoardsProjection(),
        schema=f"canvas_{unique}",
        stream=stream,
        subjects=(f"{prefix}.evt.board.*",),
    )
    # Separate pools stand for separate processes: advisory locks are per connection.
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=3) for _ in range(2)]
    stops = [asyncio.Event(), asyncio.Event()]
    runners = [ProjectionRunner(p, js, projection, default_registry(), batch=10) for p in pools]
    first = asyncio.create_task(runners[0].run(stops[0]))
    await wait_for(lambda: runners[0].state == "running")
    second = asyncio.create_task(runners[1].run(stops[1]))
    try:
        await append_boards(store, prefix, range(50))
        await wait_for(lambda: runners[0].last_seq == 50)
        await wait_for(lambda: runners[1].state == "standby")
        assert runners[1].last_seq == 0

        stops[0].set()
        await first
        await append_boards(store, prefix, range(50, 80))
        await wait_for(lambda: runners[1].last_seq == 80)
        count = await pools[1].fetchval(f'SELECT count(*) FROM "{projection.schema}".boards')
        assert count == 80
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(first, second)
        for p in pools:
            await p.close()
