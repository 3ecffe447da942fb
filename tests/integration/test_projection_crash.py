"""A projection runner SIGKILLed in the middle of a batch, then restarted: every event is applied
exactly once.

The runner runs in a real separate process (``_projection_worker.py``) so the kill is a real
crash: open transaction, advisory lock and unacked JetStream deliveries all die with it. The
worker's projection writes one row per event keyed by stream sequence with an application
counter, plus a log row per application without any key, so a double application shows up twice.

Three kills, each followed by a restart: a batch hung on purpose halfway through its writes (a
deterministic mid-batch crash), a kill right after a commit (before the ack, usually), and a kill
by timing while a batch sleeps inside its transaction. The fourth run finishes the stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from nats.js import JetStreamContext
from orrery.events import EventMeta
from orrery.events.canvas import BoardCreated
from orrery.runtime.clock import UUID7
from orrery.runtime.eventstore.jetstream import JetStreamEventStore
from orrery.runtime.infra.nats_server import NatsServer
from orrery.runtime.topology import event_stream_config

pytestmark = pytest.mark.timeout(180)

WORKER = Path(__file__).with_name("_projection_worker.py")
EVENTS = 2_000
BATCH = 50
HANG_AT = 700  # first run: the batch holding this sequence hangs mid-transaction
SECOND_KILL_AT = 1_000  # second run: killed as soon as its checkpoint reaches this
THIRD_KILL_AFTER = 100  # third run: killed mid-batch once this far past the second kill
WAIT_S = 60.0
POLL_S = 0.01

ids = UUID7()


@dataclasses.dataclass
class Setup:
    stream: str
    subjects: str
    schema: str
    last_seq: int


@pytest_asyncio.fixture
async def setup(js: JetStreamContext, unique: str) -> AsyncIterator[Setup]:
    """A fresh stream (same settings as a context's event stream) holding EVENTS boards."""
    stream, prefix = f"CRASH_{unique}", f"k{unique}"
    base = event_stream_config("canvas")
    await js.add_stream(
        dataclasses.replace(
            base, name=stream, subjects=[f"{prefix}.evt.>"], description="crash test"
        )
    )
    try:
        store = JetStreamEventStore(js, stream)
        last = 0
        for start in range(0, EVENTS, 200):
            results = await asyncio.gather(
                *(
                    store.append(
                        f"{prefix}.evt.board.b{i}",
                        BoardCreated(board_id=f"b{i}", name=f"Board {i}", slug=f"board-{i}"),
                        expected_seq=0,
                        msg_id=f"{unique}-{i}",
                        meta=EventMeta(occurred_at=datetime.now(UTC)),
                    )
                    for i in range(start, min(start + 200, EVENTS))
                )
            )
            last = max(last, *(r.sequence for r in results))
        assert last == EVENTS
        yield Setup(stream, f"{prefix}.evt.board.*", f"crash_{unique}", last)
    finally:
        await js.delete_stream(stream)


class Worker:
    """One run of the worker process; always reaped, so no ResourceWarning escapes."""

    def __init__(self, tmp: Path, run: int, env: dict[str, str]) -> None:
        self.log_path = tmp / f"worker-{run}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in reap()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        code = self.proc.poll()
        assert code is None, f"worker exited early with {code}:\n{self.log()}"

    def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def reap(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()


class Workers:
    """Starts worker runs against ``setup``; all of them share one trace file."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.trace = tmp / "trace.txt"
        self.started: list[Worker] = []

    def start(self, **env: str) -> Worker:
        run = len(self.started) + 1
        worker = Worker(self.tmp, run, {**self.env, "WORKER_TRACE": str(self.trace), **env})
        self.started.append(worker)
        return worker


@pytest.fixture
def workers(
    setup: Setup, nats_server: NatsServer, database_url: str, tmp_path: Path
) -> Iterator[Workers]:
    started = Workers(
        tmp_path,
        {
            "WORKER_NATS_URL": nats_server.url,
            "WORKER_DATABASE_URL": database_url,
            "WORKER_STREAM": setup.stream,
            "WORKER_SUBJECTS": setup.subjects,
            "WORKER_SCHEMA": setup.schema,
            "WORKER_BATCH": str(BATCH),
        },
    )
    yield started
    for w in started.started:
        w.reap()


async def checkpoint(pool: asyncpg.Pool, schema: str) -> int:
    """The committed checkpoint (0 before the worker set the projection up)."""
    try:
        value = await pool.fetchval(
            f'SELECT last_seq FROM "{schema}".orrery_projections WHERE name = $1', "applied"
        )
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return 0
    return int(value or 0)


async def wait_for(worker: Worker | None, what: str, probe: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``probe()`` until true, failing early if the worker exits."""
    deadline = time.monotonic() + WAIT_S
    while not await probe():
        if worker is not None:
            worker.check_alive()
        log = worker.log() if worker is not None else ""
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log}"
        await asyncio.sleep(POLL_S)


async def sigkill(worker: Worker, pool: asyncpg.Pool) -> None:
    """SIGKILL, then wait until Postgres has ended the dead process's sessions: a COMMIT it sent
    just before dying is then either durable or gone, and its advisory lock is free."""
    worker.sigkill()

    async def sessions_gone() -> bool:
        return not await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            f"projection-worker-{worker.pid}",
        )

    await wait_for(None, f"the sessions of worker {worker.pid} to end", sessions_gone)


def trace_begins(trace: Path, pid: int) -> list[tuple[int, int]]:
    """(first, last) of every batch ``pid`` began (half written, inside its transaction)."""
    if not trace.exists():
        return []
    out = []
    for line in trace.read_text().split("\n")[:-1]:  # complete lines only
        parts = line.split()
        if len(parts) == 4 and parts[0] == "begin" and int(parts[1]) == pid:
            out.append((int(parts[2]), int(parts[3])))
    return out


async def committed(pool: asyncpg.Pool, schema: str) -> tuple[list[asyncpg.Record], int]:
    rows = await pool.fetch(f'SELECT seq, n FROM "{schema}".applied ORDER BY seq')
    log_count = await pool.fetchval(f'SELECT count(*) FROM "{schema}".applied_log')
    return rows, int(log_count)


async def assert_exactly_up_to(pool: asyncpg.Pool, schema: str, upto: int) -> None:
    """What is committed is exactly the events 1..upto, each applied once: nothing of the
    batch in flight at the kill survived, nothing committed was lost."""
    rows, log_count = await committed(pool, schema)
    assert [r["seq"] for r in rows] == list(range(1, upto + 1))
    assert all(r["n"] == 1 for r in rows), [tuple(r) for r in rows if r["n"] != 1][:10]
    assert log_count == upto


async def test_sigkill_mid_batch_then_restart_applies_every_event_exactly_once(
    setup: Setup, pool: asyncpg.Pool, workers: Workers
) -> None:
    schema, last, trace = setup.schema, setup.last_seq, workers.trace

    # Run 1: the batch holding HANG_AT writes half its rows, then hangs inside its transaction.
    w1 = workers.start(WORKER_APPLY_SLEEP="0.01", WORKER_HANG_AT=str(HANG_AT))

    async def hanging() -> bool:
        return any(lo <= HANG_AT <= hi for lo, hi in trace_begins(trace, w1.pid))

    await wait_for(w1, "the first worker to reach the hanging batch", hanging)
    hang_first = next(lo for lo, hi in trace_begins(trace, w1.pid) if lo <= HANG_AT <= hi)
    await sigkill(w1, pool)
    c1 = await checkpoint(pool, schema)
    assert c1 == hang_first - 1, (c1, hang_first)  # everything before the batch committed
    assert 0 < c1 < last
    await assert_exactly_up_to(pool, schema, c1)

    # Run 2: killed as soon as its checkpoint passes SECOND_KILL_AT: right after a commit,
    # usually before the batch's ack reached JetStream (redelivered to nobody: the next run
    # recreates the consumer from the checkpoint).
    w2 = workers.start(WORKER_APPLY_SLEEP="0.02")

    async def past_second_mark() -> bool:
        return await checkpoint(pool, schema) >= SECOND_KILL_AT

    await wait_for(w2, "the second worker to pass the second mark", past_second_mark)
    await sigkill(w2, pool)
    c2 = await checkpoint(pool, schema)
    assert c1 < SECOND_KILL_AT <= c2 < last, (c1, c2)
    await assert_exactly_up_to(pool, schema, c2)
    assert trace_begins(trace, w2.pid)[0][0] == c1 + 1  # resumed right after the checkpoint

    # Run 3: killed by timing while a batch past THIRD_KILL_AFTER sleeps inside its transaction.
    w3 = workers.start(WORKER_APPLY_SLEEP="0.3")

    async def in_flight() -> bool:
        begun = trace_begins(trace, w3.pid)
        return bool(begun) and begun[-1][0] > c2 + THIRD_KILL_AFTER

    await wait_for(w3, "the third worker to begin a batch past the third mark", in_flight)
    killed_batch = trace_begins(trace, w3.pid)[-1]
    await sigkill(w3, pool)
    c3 = await checkpoint(pool, schema)
    assert c3 == killed_batch[0] - 1 < last, (c3, killed_batch)  # that batch never committed
    await assert_exactly_up_to(pool, schema, c3)
    assert trace_begins(trace, w3.pid)[0][0] == c2 + 1

    # Run 4: to the end, then a clean stop.
    w4 = workers.start(WORKER_APPLY_SLEEP="0")

    async def caught_up() -> bool:
        return await checkpoint(pool, schema) == last

    await wait_for(w4, "the fourth worker to reach the last sequence", caught_up)
    assert trace_begins(trace, w4.pid)[0][0] == c3 + 1
    w4.proc.send_signal(signal.SIGTERM)
    assert w4.proc.wait(timeout=15) == 0, w4.log()

    rows, log_count = await committed(pool, schema)
    assert len(rows) == EVENTS == last
    assert [r["seq"] for r in rows] == list(range(1, last + 1))
    assert max(r["n"] for r in rows) == 1
    assert log_count == EVENTS
    # Each event was applied by the process whose transaction committed it, and only by it.
    by_pid = {
        r["pid"]: (r["lo"], r["hi"], r["n"])
        for r in await pool.fetch(
            f"SELECT pid, min(seq) AS lo, max(seq) AS hi, count(*) AS n"
            f' FROM "{schema}".applied_log GROUP BY pid'
        )
    }
    assert by_pid == {
        w1.pid: (1, c1, c1),
        w2.pid: (c1 + 1, c2, c2 - c1),
        w3.pid: (c2 + 1, c3, c3 - c2),
        w4.pid: (c3 + 1, last, last - c3),
    }
