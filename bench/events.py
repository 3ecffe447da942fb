"""Event-path benchmark: Orrery's event store and rebuild against bare nats-py, same servers.

Each comparison is a ratio of event rates, ``orrery / bare`` (1.0 = nothing lost to Orrery):

* **append**: ``JetStreamEventStore.append`` of N ``canvas.BoardCreated`` events (256-byte
  bodies), each a new aggregate (``canvas.evt.board.<id>``, ``expected_seq=0``, ``msg_id``, full
  ``EventMeta``), awaited one by one as a command handler does. Bare: ``await js.publish(subject,
  body)`` of the same body bytes, one new subject each, into a second stream made from the same
  ``event_stream_config`` (only name and subjects differ). Orrery's encoding, headers, dedup id
  and concurrency check are the overhead measured; bare gets its bodies pre-encoded.
* **rebuild**: ``rebuild(pool, js, BoardsProjection(), default_registry())`` of all of
  ``CANVAS_EVENTS`` (scratch schema, decode, Postgres writes, switch), against an ordered consumer
  on the same filter with the same pending limits that only reads each message's sequence up to
  the stream's last one, handed over by nats-py's callback path (its fastest: no task per message).

The bare sides use a stock nats-py client (``nats.connect``); Orrery's sides use the client its
services use (``orrery.runtime.bus.connect``), whose only difference is a faster header parser.

Two references are printed but kept out of the ratios: bare publish carrying Orrery's headers
(what the headers alone cost) and the bare replay pulling with ``next_msg``, as ``replay()`` does.

Fairness: one process, one connection, the same servers, payloads and counts. Sides run in turn
every round, rotating who goes first, so a noisy neighbour on a small shared machine hits all
alike; medians are reported. Missed targets warn; only errors exit non-zero.

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
import nats
from nats.aio.msg import Msg
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
from orrery.runtime.topology import ensure_stream, event_stream_config

BODY_BYTES = 256
BARE_STREAM = "BENCH_BARE_EVENTS"
BARE_PREFIX = "bench.evt.board"
TARGETS = {"append": 0.80, "rebuild": 0.70}
ids = UUID7()

Batch = tuple[list[str], list[BoardCreated], list[EventMeta], list[str]]  # +event ids
Run = tuple[float, int]  # events per second, events
Rates = dict[str, list[float]]  # side -> rate of every round


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
            occurred_at=now,
            actor="bench",
            correlation_id=ids.new(),
            causation_id=ids.new(),
        )
        for _ in events
    ]
    subs = [subjects.event_subject("canvas", "board", e.board_id) for e in events]
    return subs, events, metas, [ids.new() for _ in events]


async def append_orrery(store: JetStreamEventStore, batch: Batch) -> Run:
    subs, events, metas, event_ids = batch
    began = time.perf_counter()
    for subject, event, meta, event_id in zip(subs, events, metas, event_ids, strict=True):
        await store.append(subject, event, expected_seq=0, msg_id=event_id, meta=meta)
    return len(events) / (time.perf_counter() - began), len(events)


async def append_bare(js: JetStreamContext, batch: Batch, *, headers: bool = False) -> Run:
    """``headers=True`` (a reference, not the baseline) sends Orrery's headers along."""
    subs = [f"{BARE_PREFIX}.{e.board_id}" for e in batch[1]]
    bodies = [codec.encode(e) for e in batch[1]]
    heads: list[dict[str, str] | None] = [
        {**codec.event_headers(e, m), codec.H_MSG_ID: i, codec.H_EXPECTED_SUBJECT_SEQ: "0"}
        if headers
        else None
        for e, m, i in zip(batch[1], batch[2], batch[3], strict=True)
    ]
    began = time.perf_counter()
    for subject, body, head in zip(subs, bodies, heads, strict=True):
        await js.publish(subject, body, headers=head)
    return len(bodies) / (time.perf_counter() - began), len(bodies)


async def rebuild_orrery(pool: asyncpg.Pool, js: JetStreamContext) -> Run:
    began = time.perf_counter()
    count = await rebuild(pool, js, BoardsProjection(), default_registry())
    return count / (time.perf_counter() - began), count


async def replay_bare(js: JetStreamContext, *, callback: bool) -> Run:
    """Read the filter's messages up to the stream's last sequence, doing nothing with them:
    through the subscription's callback, or pulling each with ``next_msg``."""
    p = BoardsProjection()
    began = time.perf_counter()
    last = await stream_last_seq(js, p.stream)
    reached: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    count = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal count
        count += 1
        if msg.metadata.sequence.stream >= last and not reached.done():
            reached.set_result(None)

    sub = await js.subscribe(
        p.subjects[0],
        stream=p.stream,
        ordered_consumer=True,
        pending_msgs_limit=-1,
        pending_bytes_limit=-1,
        cb=on_msg if callback else None,
    )
    try:
        async with asyncio.timeout(30 + last / 1_000):
            if callback:
                await reached
            else:
                while not reached.done():
                    await on_msg(await sub.next_msg(timeout=5.0))
    finally:
        await sub.unsubscribe()
    return count / (time.perf_counter() - began), count


async def alternate(
    rounds: int, sides: dict[str, Callable[[int], Awaitable[Run]]]
) -> tuple[Rates, set[int]]:
    """Run every side once per round, rotating who goes first: rates per side, counts seen."""
    names = list(sides)
    rates: Rates = {name: [] for name in names}
    counts: set[int] = set()
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            rate, count = await sides[name](r)
            rates[name].append(rate)
            counts.add(count)
    return rates, counts


async def bench(count: int, rounds: int, root: Path) -> tuple[dict[str, Rates], int]:
    async with NatsServer(root / "nats") as ns, PostgresServer(root / "pg") as pg:
        nc = await bus.connect(ns.url, "orrery-bench")  # Orrery's client, as services use it
        raw = await nats.connect(ns.url, name="bare-bench")  # stock nats-py for the bare sides
        pool = await asyncpg.create_pool(pg.url, min_size=1, max_size=4)
        assert pool is not None
        try:
            js, raw_js = nc.jetstream(), raw.jetstream()
            config = event_stream_config("canvas")
            await ensure_stream(js, config)
            bare = dataclasses.replace(config, name=BARE_STREAM, subjects=[f"{BARE_PREFIX}.>"])
            await ensure_stream(js, bare)
            store = JetStreamEventStore(js, config.name or "", registry=default_registry())
            batches = [make_batch(count, r * count) for r in range(rounds * 2)]
            warm = make_batch(50, -100)  # connections, inboxes and server warm-up: not timed
            await append_orrery(store, warm)
            await append_bare(raw_js, warm)
            body = len(codec.encode(warm[1][0]))
            print(f"{count:,} events per round, {rounds} rounds, {body}-byte bodies")
            appends, _ = await alternate(
                rounds,
                {
                    "orrery": lambda r: append_orrery(store, batches[r]),
                    "bare": lambda r: append_bare(raw_js, batches[r]),
                    "headers": lambda r: append_bare(raw_js, batches[rounds + r], headers=True),
                },
            )
            rebuilds, replayed = await alternate(
                rounds,
                {
                    "orrery": lambda _: rebuild_orrery(pool, js),
                    "bare": lambda _: replay_bare(raw_js, callback=True),
                    "next_msg": lambda _: replay_bare(raw_js, callback=False),
                },
            )
            rows = int(await pool.fetchval("SELECT count(*) FROM canvas.boards"))
            if replayed != {rows}:
                raise RuntimeError(f"replays read {replayed} events, canvas.boards has {rows}")
        finally:
            await pool.close()
            await nc.close()
            await raw.close()
    return {"append": appends, "rebuild": rebuilds}, rows


def report(phases: dict[str, Rates], rows: int) -> str:
    """Print the table and the runs; returns the RESULT line."""
    med = {p: {side: statistics.median(xs) for side, xs in r.items()} for p, r in phases.items()}
    ratios = {phase: med[phase]["orrery"] / med[phase]["bare"] for phase in phases}
    print(f"\n{'':<9}{'orrery ev/s':>13}{'bare ev/s':>13}{'ratio':>8}{'target':>8}")
    for phase, ratio in ratios.items():
        flag = "ok" if ratio >= TARGETS[phase] else "BELOW TARGET"
        print(
            f"{phase:<9}{med[phase]['orrery']:>13,.0f}{med[phase]['bare']:>13,.0f}"
            f"{ratio:>8.3f}{TARGETS[phase]:>8.2f}  {flag}"
        )
    print(f"({rows:,} events per rebuild)\n\nreference, not in the ratios (median ev/s):")
    print(f"  bare publish carrying Orrery's headers {med['append']['headers']:>10,.0f}")
    print(f"  bare replay pulling with next_msg      {med['rebuild']['next_msg']:>10,.0f}")
    print("runs (ev/s, in order):")
    for phase, rates in phases.items():
        for side, xs in rates.items():
            print(f"  {phase:<8}{side:<9}" + " ".join(f"{x:>9,.0f}" for x in xs))
    for phase, ratio in ratios.items():
        if ratio < TARGETS[phase]:
            print(f"warning: {phase} ratio {ratio:.3f} is below target {TARGETS[phase]:.2f}")
    next_msg = med["rebuild"]["orrery"] / med["rebuild"]["next_msg"]
    return (
        f"RESULT append_ratio={ratios['append']:.2f} rebuild_ratio={ratios['rebuild']:.2f}"
        f" rebuild_ratio_next_msg={next_msg:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=5_000, help="events per round")
    parser.add_argument("--quick", action="store_true", help="CI size: 1,000 events per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side (median)")
    args = parser.parse_args()
    count = 1_000 if args.quick else args.events
    if count < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be positive")
    with tempfile.TemporaryDirectory(prefix="orrery-bench-") as tmp:
        phases, rows = asyncio.run(bench(count, args.rounds, Path(tmp)))
    print(report(phases, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
