"""kill -9 of a service while it handles commands loses nothing acknowledged and applies
nothing twice: the work queue redelivers, the command loop and projection are idempotent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from nats.js import JetStreamContext
from orrery.events import EventMeta, codec, subjects
from orrery.events.canvas import CreateBoard
from orrery.runtime import bus
from orrery.runtime.eventstore.jetstream import JetStreamEventStore
from orrery.runtime.infra.nats_server import NatsServer
from orrery.runtime.infra.postgres_server import PostgresServer

COUNT = 500


def start_canvas(nats: NatsServer, pg: PostgresServer, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORRERY_")}
    env |= {"ORRERY_NATS_URL": nats.url, "ORRERY_DATABASE_URL": pg.url}
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "orrery-canvas")], env=env, stdout=out, stderr=out
        )


async def rows(pg_url: str) -> int:
    conn = await asyncpg.connect(pg_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM canvas.boards"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def test_kill9_mid_stream_of_commands(tmp_path: Path) -> None:
    async with NatsServer(tmp_path / "nats") as nats, PostgresServer(tmp_path / "pg") as pg:
        service = start_canvas(nats, pg, tmp_path / "canvas.log")
        nc = await bus.connect(nats.url, "client")
        try:
            js: JetStreamContext = nc.jetstream()
            async with asyncio.timeout(30):  # the service creates its streams at start
                while True:
                    try:
                        await js.stream_info(subjects.command_stream("canvas"))
                        break
                    except Exception:
                        await asyncio.sleep(0.05)
            for i in range(COUNT):
                command = CreateBoard(
                    command_id=f"c{i}", board_id=f"b{i}", name=f"n{i}", slug=f"s{i}"
                )
                ack = await js.publish(
                    subjects.command_subject("canvas", "CreateBoard"),
                    codec.encode(command),
                    headers=codec.command_headers(
                        command, EventMeta(occurred_at=datetime.now(UTC))
                    ),
                )
                assert not ack.duplicate  # every command acknowledged by the stream
            async with asyncio.timeout(30):  # kill it part way through the work
                while await rows(pg.url) < COUNT // 4:
                    await asyncio.sleep(0.01)
            service.send_signal(signal.SIGKILL)
            service.wait(timeout=10)
            assert await rows(pg.url) < COUNT, "killed too late to prove anything"

            service = start_canvas(nats, pg, tmp_path / "canvas.log")
            async with asyncio.timeout(60):
                while await rows(pg.url) < COUNT:
                    await asyncio.sleep(0.1)

            store = JetStreamEventStore(js, subjects.event_stream("canvas"))
            for i in range(COUNT):  # exactly one event per command in the log
                events = await store.load(subjects.event_subject("canvas", "board", f"b{i}"))
                assert [e.causation_id for e in events] == [f"c{i}"]
            info = await js.stream_info(subjects.command_stream("canvas"))
            assert info.state.messages == 0
        finally:
            await nc.close()
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=30)
