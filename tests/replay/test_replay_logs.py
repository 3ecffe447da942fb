"""Recorded event logs replayed through projections, rows compared with what was recorded.

Each `logs/<name>.jsonl` is a stream as it was written (subject, headers, body per line); the
matching `<name>.expected.json` holds the rows the projection must produce from it. The log is
published with its original headers into a fresh stream, then rebuilt from, and also applied by
the live runner, both compared with the expectation."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import asyncpg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from orrery.canvas.projections.boards import BoardsProjection
from orrery.events import default_registry
from orrery.runtime.projections.rebuild import rebuild
from orrery.runtime.projections.runner import ProjectionRunner

LOGS = Path(__file__).parent / "logs"


async def publish_log(js: JetStreamContext, stream: str, prefix: str, name: str) -> int:
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.evt.>"]))
    count = 0
    for line in (LOGS / f"{name}.jsonl").read_text().splitlines():
        record = json.loads(line)
        subject = prefix + record["subject"][len("canvas") :]
        await js.publish(subject, json.dumps(record["body"]).encode(), headers=record["headers"])
        count += 1
    return count


async def rows(pool: asyncpg.Pool, schema: str) -> list[dict[str, object]]:
    records = await pool.fetch(f'SELECT * FROM "{schema}".boards ORDER BY board_id')
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
        for r in records
    ]


async def test_canvas_boards_log(js: JetStreamContext, pool: asyncpg.Pool, unique: str) -> None:
    prefix, stream = f"c{unique}", f"REPLAY_{unique}"
    count = await publish_log(js, stream, prefix, "canvas-boards")
    projection = dataclasses.replace(
        BoardsProjection(),
        schema=f"canvas_{unique}",
        stream=stream,
        subjects=(f"{prefix}.evt.board.*",),
    )
    expected = json.loads((LOGS / "canvas-boards.expected.json").read_text())

    # Live: the runner applies the log as it would in production.
    stop = asyncio.Event()
    runner = ProjectionRunner(pool, js, projection, default_registry())
    task = asyncio.create_task(runner.run(stop))
    async with asyncio.timeout(20):
        while runner.last_seq < count:
            await asyncio.sleep(0.05)
    stop.set()
    await task
    assert await rows(pool, projection.schema) == expected

    # Rebuilt from the log: same rows.
    replayed = await rebuild(pool, js, projection, default_registry())
    assert replayed == 5  # the rejection is on another subject: not this projection's
    assert await rows(pool, projection.schema) == expected
