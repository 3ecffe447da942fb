"""Event-path benchmark: Orrery's event store and rebuild against bare nats-py on the same server.

Two comparisons, each as a ratio ``orrery / bare`` (1.0 = no overhead of ours):

* **append**: ``JetStreamEventStore.append`` of N ``canvas.BoardCreated`` events (~256-byte
  bodies), one new aggregate each (``canvas.evt.board.<id>``, ``expected_seq=0``, a ``msg_id``
  and a full ``EventMeta``), awaited one by one, as a command handler does. The baseline is
  ``await js.publish(subject, body)`` with the very same body bytes, one new subject per message,
  into a second stream built from the same ``event_stream_config`` (only name and subjects
  differ). The bare loop gets its bodies pre-encoded; Orrery's encoding, headers, dedup id and
  concurrency check are exactly the overhead being measured.
* **rebuild**: ``rebuild(pool, js, BoardsProjection(), default_registry())`` over everything
  appended to ``CANVAS_EVENTS`` (decode + Postgres upserts + table swap), against an ordered
  consumer with the same filter subject and pending limits that only reads the same messages
  up to the stream's last sequence. The ratio therefore shows what decoding and Postgres cost
  on top of the fastest nats-py replay.

Fairness: both sides run in one process, on one connection, against the same servers, with
identical payloads and counts. Rounds alternate (and swap which side goes first every round) so
that a noisy neighbour on a small shared machine hits both alike; the median rate is reported.
Targets (append >= 0.80, rebuild >= 0.70) are printed as warnings, never as a failing exit code.

Run: ``.venv/bin/python bench/events.py [--events N | --quick] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from nats.js import JetStreamContext

from orrery.canvas.projections.boards import BoardsProjection
from orrery.events import EventMeta, codec, default_registry, subjects
from orrery.events.canvas import BoardCreated
from orrery.runtime import bus
from orrery.runtime.clock import UUID7
from orrery.runtime.eventstore.jetstream import JetStreamEventStore
from orrery.runtime.infra import NatsServer, PostgresServer
from orrery.runtime.projections.rebuild import rebuild
from orrery.runtime.projections.replay import stream_last_seq
from orrery.runtime.topology import event_stream_config, ensure_stream

BODY_BYTES = 256
BARE_STREAM = "BENCH_BARE_EVENTS"
BARE_PREFIX = "bench.evt.board"
APPEND_TARGET = 0.80
REBUILD_TARGET = 0.70
ids = UUID7()

Batch = tuple[list[str], list[BoardCreated], list[EventMeta]]


def board_event(n: int) -> BoardCreated:
    """A BoardCreated whose JSON body is exactly BODY_BYTES long (the name takes the padding)."""
    bid, slug = ids.new(), f"board-{n}"
    bare = len(codec.encode(BoardCreated(board_id=bid, name="", slug=slug)))
    name = (f"Benchmark board {n} " * 20)[: BODY_BYTES - bare]
    return BoardCreated(board_id=bid, name=name, slug=slug)


def make_batch(count: int, start: int) -> Batch:
    """Subjects, events and metas prepared outside the timed loop, as a caller has them."""
    events = [board_event(start + i) for i in range(count)]
    now = datetime.now(UTC)
    metas = [
        EventMeta(
            event_id=ids.new(), occurred_at=now, actor="bench",
            correlation_id=ids.new(), causation_id=ids.new(),
        )
        for _ in events
    ]
    subs = [subjects.event_subject("canvas", "board", e.board_id) for e in events]
    return subs, events, metas


async def append_orrery(store: JetStreamEventStore, batch: Batch) -> float:
    subs, events, metas = batch
    began = time.perf_counter()
    for subject, event, meta in zip(subs, events, metas, strict=True):
        await store.append(subject, event, expected_seq=0, msg_id=meta.event_id, meta=meta)
    return len(events) / (time.perf_counter() - began)


async def append_bare(js: JetStreamContext, batch: Batch) -> float:
    subs = [f"{BARE_PREFIX}.{e.board_id}" for e in batch[1]]
    bodies = [codec.encode(e) for e in batch[1]]
    began = time.perf_counter()
    for subject, body in zip(subs, bodies, strict=True):
        await js.publish(subject, body)
    return len(bodies) / (time.perf_counter() - began)


async def rebuild_orrery(pool: asyncpg.Pool, js: JetStreamContext) -> tuple[float, int]:
    began = time.perf_counter()
    count = await rebuild(pool, js, BoardsProjection(), default_registry())
    return count / (time.perf_counter() - began), count


async def replay_bare(js: JetStreamContext) -> tuple[float, int]:
    p = BoardsProjection()
    began = time.perf_counter()
    last = await stream_last_seq(js, p.stream)
    sub = await js.subscribe(
        p.subjects[0], stream=p.stream, ordered_consumer=True,
        pending_msgs_limit=-1, pending_bytes_limit=-1,
    )
    count = 0
    try:
        while True:
            msg = await sub.next_msg(timeout=5.0)
            count += 1
            if msg.metadata.sequence.stream >= last:
                break
    finally:
        await sub.unsubscribe()
    return count / (time.perf_counter() - began), count


async def alternate(
    rounds: int,
    ours: Callable[[int], Awaitable[float]],
    bare: Callable[[int], Awaitable[float]],
) -> tuple[list[float], list[float]]:
    """Run both sides ``rounds`` times, swapping which goes first each round."""
    a: list[float] = []
    b: list[float] = []
    for r in range(rounds):
        pair = [(ours, a), (bare, b)]
        for fn, out in pair if r % 2 == 0 else reversed(pair):
            gc.collect()
            out.append(await fn(r))
    return a, b


def row(label: str, ours: list[float], bare: list[float], target: float) -> tuple[str, float]:
    mo, mb = statistics.median(ours), statistics.median(bare)
    ratio = mo / mb
    runs = lambda xs: " ".join(f"{x:,.0f}" for x in xs)  # noqa: E731
    flag = "ok" if ratio >= target else f"BELOW TARGET {target:.2f}"
    line = (
        f"{label:<8} {mo:>12,.0f} {mb:>12,.0f} {ratio:>7.3f}  {flag}\n"
        f"{'':<8} orrery runs: {runs(ours)} | bare runs: {runs(bare)}"
    )
    return line, ratio


async def bench(count: int, rounds: int, root: Path) -> tuple[float, float]:
    async with NatsServer(root / "nats") as ns, PostgresServer(root / "pg") as pg:
        nc = await bus.connect(ns.url, "orrery-bench")
        pool = await asyncpg.create_pool(pg.url, min_size=1, max_size=4)
        assert pool is not None
        try:
            js = nc.jetstream()
            config = event_stream_config("canvas")
            await ensure_stream(js, config)
            await ensure_stream(
                js, dataclasses.replace(config, name=BARE_STREAM, subjects=[f"{BARE_PREFIX}.>"])
            )
            store = JetStreamEventStore(js, config.name or "", registry=default_registry())
            batches = [make_batch(count, r * count) for r in range(rounds)]
            warm = make_batch(50, -100)  # connection, inbox and server warm-up, not timed
            await append_orrery(store, warm)
            await append_bare(js, warm)
            print(f"{count:,} events x {rounds} rounds, body {len(codec.encode(warm[1][0]))} B,"
                  f" nats-server at {ns.url}, postgres at {pg.url}")

            async def ours_append(r: int) -> float:
                return await append_orrery(store, batches[r])

            async def bare_append(r: int) -> float:
                return await append_bare(js, batches[r])

            app_o, app_b = await alternate(rounds, ours_append, bare_append)

            counts: dict[str, int] = {}

            async def ours_rebuild(r: int) -> float:
                rate, counts["orrery"] = await rebuild_orrery(pool, js)
                return rate

            async def bare_rebuild(r: int) -> float:
                rate, counts["bare"] = await replay_bare(js)
                return rate

            reb_o, reb_b = await alternate(rounds, ours_rebuild, bare_rebuild)
            rows = await pool.fetchval("SELECT count(*) FROM canvas.boards")
            if not counts["orrery"] == counts["bare"] == rows:
                raise RuntimeError(f"replayed counts differ: {counts}, {rows} rows in canvas.boards")
        finally:
            await pool.close()
            await nc.close()

    append_line, append_ratio = row("append", app_o, app_b, APPEND_TARGET)
    rebuild_line, rebuild_ratio = row("rebuild", reb_o, reb_b, REBUILD_TARGET)
    print(f"\n{'':<8} {'orrery ev/s':>12} {'bare ev/s':>12} {'ratio':>7}  (median of {rounds})")
    print(append_line)
    print(f"{rebuild_line}\n{'':<8} ({counts['orrery']:,} events replayed per rebuild)")
    for name, ratio, target in (
        ("append", append_ratio, APPEND_TARGET), ("rebuild", rebuild_ratio, REBUILD_TARGET)
    ):
        if ratio < target:
            print(f"warning: {name} ratio {ratio:.3f} is below target {target:.2f}")
    return append_ratio, rebuild_ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=5_000, help="events per round")
    parser.add_argument("--quick", action="store_true", help="CI size: 1,000 events")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side (median)")
    args = parser.parse_args()
    count = 1_000 if args.quick else args.events
    if count < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be positive")
    with tempfile.TemporaryDirectory(prefix="orrery-bench-") as tmp:
        append_ratio, rebuild_ratio = asyncio.run(bench(count, args.rounds, Path(tmp)))
    print(f"RESULT append_ratio={append_ratio:.2f} rebuild_ratio={rebuild_ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
