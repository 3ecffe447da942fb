"""A projection runner in a process of its own, for test_projection_crash.py to SIGKILL.

It runs ``ProjectionRunner`` for ``AppliedProjection``, whose ``apply`` writes one row per event
(key = stream sequence, ``n`` counts applications) and one row per application to a log table
without any key, so an event applied twice shows up as ``n = 2`` *and* as a duplicate log row.

Configured by environment variables (all required unless a default is given):

- ``WORKER_NATS_URL``, ``WORKER_DATABASE_URL``
- ``WORKER_STREAM``, ``WORKER_SUBJECTS`` (comma-separated filter subjects), ``WORKER_SCHEMA``
- ``WORKER_BATCH`` (default 50): events per fetch
- ``WORKER_APPLY_SLEEP`` (default 0.05): seconds slept inside every batch's transaction, after
  half of its rows are written, so a kill lands mid-batch with uncommitted writes
- ``WORKER_HANG_AT`` (default 0 = never): the batch containing this sequence writes half of its
  rows and then hangs inside its transaction, for a kill at a known point
- ``WORKER_TRACE``: a file to which ``begin <pid> <first> <last>`` is appended (and flushed)
  once a batch's first half is written, before it sleeps or hangs

SIGTERM stops the runner cleanly. Its Postgres sessions are named ``projection-worker-<pid>``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from orrery.events import Envelope, Event, default_registry
from orrery.runtime import bus
from orrery.runtime.projections.runner import ProjectionRunner


@dataclass(frozen=True)
class AppliedProjection:
    schema: str
    stream: str
    subjects: Sequence[str]
    apply_sleep: float = 0.05
    hang_at: int = 0
    trace: str = ""
    name: str = "applied"
    version: int = 1
    tables: Sequence[str] = ("applied", "applied_log")

    def ddl(self, schema: str) -> Sequence[str]:
        return [
            f'CREATE TABLE "{schema}".applied (seq bigint PRIMARY KEY, n integer NOT NULL)',
            f'CREATE TABLE "{schema}".applied_log (seq bigint NOT NULL, pid integer NOT NULL)',
        ]

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        seqs = [e.sequence for e in events]
        half = max(1, len(seqs) // 2)
        await self._write(conn, schema, seqs[:half])
        if self.trace:
            with open(self.trace, "a", encoding="utf-8") as f:
                f.write(f"begin {os.getpid()} {seqs[0]} {seqs[-1]}\n")
                f.flush()
        if self.hang_at and seqs[0] <= self.hang_at <= seqs[-1]:
            await asyncio.Event().wait()  # until killed
        if self.apply_sleep > 0:
            await asyncio.sleep(self.apply_sleep)
        await self._write(conn, schema, seqs[half:])

    async def _write(self, conn: asyncpg.Connection, schema: str, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        await conn.executemany(
            f'INSERT INTO "{schema}".applied (seq, n) VALUES ($1, 1)'
            " ON CONFLICT (seq) DO UPDATE SET n = applied.n + 1",
            [(s,) for s in seqs],
        )
        await conn.executemany(
            f'INSERT INTO "{schema}".applied_log (seq, pid) VALUES ($1, $2)',
            [(s, os.getpid()) for s in seqs],
        )


async def main() -> None:
    env = os.environ
    projection = AppliedProjection(
        schema=env["WORKER_SCHEMA"],
        stream=env["WORKER_STREAM"],
        subjects=tuple(env["WORKER_SUBJECTS"].split(",")),
        apply_sleep=float(env.get("WORKER_APPLY_SLEEP", "0.05")),
        hang_at=int(env.get("WORKER_HANG_AT", "0")),
        trace=env.get("WORKER_TRACE", ""),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    nc = await bus.connect(env["WORKER_NATS_URL"], f"projection-worker-{os.getpid()}")
    pool = await asyncpg.create_pool(
        env["WORKER_DATABASE_URL"],
        min_size=1,
        max_size=3,
        # lets the test see when the sessions of a killed worker are gone
        server_settings={"application_name": f"projection-worker-{os.getpid()}"},
    )
    assert pool is not None
    try:
        runner = ProjectionRunner(
            pool=pool,
            js=nc.jetstream(),
            projection=projection,
            registry=default_registry(),
            batch=int(env.get("WORKER_BATCH", "50")),
        )
        await runner.run(stop)
    finally:
        await pool.close()
        await nc.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main())
