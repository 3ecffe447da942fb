"""A NATS or PostgreSQL restart (even after kill -9) is survived: the service reconnects and
commands sent afterwards take effect, with nothing applied twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from orrery.canvas.main import spec as canvas_spec
from orrery.events import EventMeta, codec, subjects
from orrery.events.canvas import CreateBoard
from orrery.runtime import bus
from orrery.runtime.infra.nats_server import NatsServer
from orrery.runtime.infra.postgres_server import PostgresServer
from orrery.runtime.service import run_service
from orrery.runtime.settings import load


async def send(nats_url: str, board_id: str) -> None:
    """A client that retries until the command is acknowledged by the stream."""
    command = CreateBoard(
        command_id=f"cmd-{board_id}", board_id=board_id, name=board_id, slug=board_id
    )
    meta = EventMeta(occurred_at=datetime.now(UTC))
    async with asyncio.timeout(30):
        while True:
            try:
                nc = await bus.connect(nats_url, "client", connect_timeout=1)
                try:
                    await nc.jetstream().publish(
                        subjects.command_subject("canvas", "CreateBoard"),
                        codec.encode(command),
                        headers=codec.command_headers(command, meta),
                        timeout=2,
                    )
                    return
                finally:
                    await nc.close()
            except Exception:
                await asyncio.sleep(0.2)


async def boards(pg_url: str) -> list[str]:
    try:
        conn = await asyncpg.connect(pg_url, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return []
    try:
        return [
            r["board_id"]
            for r in await conn.fetch("SELECT board_id FROM canvas.boards ORDER BY board_id")
        ]
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await conn.close()


async def until_boards(pg_url: str, expected: list[str]) -> None:
    async with asyncio.timeout(60):
        while (found := await boards(pg_url)) != expected:
            assert len(found) <= len(expected), found
            await asyncio.sleep(0.1)


async def test_service_survives_nats_and_postgres_kill9(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path / "nats")
    pg = PostgresServer(tmp_path / "pg")
    await nats.start()
    await pg.start()
    stop = asyncio.Event()
    service = asyncio.create_task(
        run_service(canvas_spec(load({})), nats.url, pg.url, stop, heartbeat_interval=0.2)
    )
    try:
        await send(nats.url, "b1")
        await until_boards(pg.url, ["b1"])

        nats.kill()
        await nats.start()  # same port, same data dir
        await send(nats.url, "b2")
        await until_boards(pg.url, ["b1", "b2"])

        pg.kill()
        await send(nats.url, "b3")  # accepted by the stream while the database is down
        await pg.start()
        await until_boards(pg.url, ["b1", "b2", "b3"])
        assert not service.done()
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await service
        await pg.stop()
        await nats.stop()
