"""Rebuilding a projection from the log gives the tables the live runner built.

1. A property: for any valid history of board events (creates and renames, which the projection
   folds in memory, mixed with updates, deletes and zone/note events, which it applies one by one
   and which move the board's ``last_seq``; with events of another aggregate kind in the same
   stream, which the projection filters out), applied live by ``ProjectionRunner`` in batches of
   any size and partly while it runs, ``rebuild()`` yields exactly the live rows, and both equal a
   model of the history.
2. A rebuild while the live runner keeps applying events that keep being appended: the rebuild
   must catch up with what the runner applied meanwhile when it switches the tables in, and the
   runner must carry on into the new tables, ending equal to a projection that was never rebuilt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import string
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext
from orrery.canvas.projections.boards import BoardsProjection
from orrery.events import Envelope, Event, EventMeta, default_registry
from orrery.events.canvas import (
    BoardCreated,
    BoardDeleted,
    BoardRenamed,
    BoardUpdated,
    Note,
    NoteAdded,
    Zone,
    ZoneAdded,
)
from orrery.runtime.clock import UUID7
from orrery.runtime.eventstore.jetstream import JetStreamEventStore
from orrery.runtime.projections import checkpoints
from orrery.runtime.projections.base import Projection
from orrery.runtime.projections.rebuild import rebuild, scratch_schema
from orrery.runtime.projections.runner import ProjectionRunner
from orrery.runtime.topology import event_stream_config

pytestmark = pytest.mark.timeout(300)

ids = UUID7()
REGISTRY = default_registry()
BOARD_IDS = ("b0", "b1", "b2", "b3")
ACTORS = ("ada", "bob", "system")
WAIT_S = 30.0


# --- helpers -----------------------------------------------------------------------------------


def token() -> str:
    return ids.new().replace("-", "")[-12:]


async def fresh_stream(js: JetStreamContext, tok: str) -> tuple[str, str]:
    """A new stream with a context event stream's settings; returns (stream, subject prefix)."""
    stream, prefix = f"REBUILD_{tok}", f"r{tok}"
    await js.add_stream(
        dataclasses.replace(
            event_stream_config("canvas"),
            name=stream,
            subjects=[f"{prefix}.evt.>"],
            description="rebuild test",
        )
    )
    return stream, prefix


def boards_projection(schema: str, stream: str, prefix: str) -> BoardsProjection:
    return dataclasses.replace(
        BoardsProjection(), schema=schema, stream=stream, subjects=(f"{prefix}.evt.board.*",)
    )


@dataclasses.dataclass(frozen=True)
class Step:
    """One event to append: ``kind`` is the aggregate kind of its subject."""

    kind: str
    aggregate_id: str
    event: Event
    actor: str


Row = tuple[str, str, str, str, str, str, bool, str, datetime, datetime, int]
"""board_id, name, slug, icon, description, context (JSON), deleted, created_by, created_at,
updated_at, last_seq"""


class Log:
    """Appends steps and folds them into the rows BoardsProjection must hold."""

    def __init__(self, js: JetStreamContext, stream: str, prefix: str) -> None:
        self.store = JetStreamEventStore(js, stream)
        self.prefix = prefix
        self.model: dict[str, Row] = {}
        self.last_seq = 0
        self.last_board_seq = 0

    async def append(self, step: Step) -> int:
        meta = EventMeta(occurred_at=datetime.now(UTC), actor=step.actor)
        result = await self.store.append(
            f"{self.prefix}.evt.{step.kind}.{step.aggregate_id}",
            step.event,
            expected_seq=None,
            msg_id=ids.new(),
            meta=meta,
        )
        assert not result.duplicate
        seq, at = result.sequence, meta.occurred_at
        self.last_seq = seq
        if step.kind == "board":
            self.last_board_seq = seq
            event = step.event
            if isinstance(event, BoardCreated):
                assert event.board_id not in self.model
                self.model[event.board_id] = (
                    event.board_id, event.name, event.slug, "", "", "{}", False, step.actor,
                    at, at, seq,
                )  # fmt: skip
            else:
                # Every board event moves the board's updated_at and last_seq.
                bid, name, slug, icon, text, context, deleted, by, created, _, _ = self.model[
                    getattr(event, "board_id", "")
                ]
                match event:
                    case BoardRenamed():
                        name = event.name
                    case BoardUpdated():
                        name, icon, text = event.name, event.icon, event.description
                        context = msgspec.json.encode(event.context).decode()
                    case BoardDeleted():
                        deleted = True
                self.model[bid] = (
                    bid, name, slug, icon, text, context, deleted, by, created, at, seq
                )  # fmt: skip
        return seq

    def rows(self) -> list[Row]:
        return [self.model[bid] for bid in sorted(self.model)]


async def table_rows(pool: asyncpg.Pool, schema: str) -> list[Row]:
    rows = await pool.fetch(
        "SELECT board_id, name, slug, icon, description, context, deleted, created_by,"
        f' created_at, updated_at, last_seq FROM "{schema}".boards ORDER BY board_id'
    )
    return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10]) for r in rows]


async def checkpoint(pool: asyncpg.Pool, p: Projection) -> tuple[int, int] | None:
    async with pool.acquire() as conn:
        return await checkpoints.read(conn, p)


async def wait_checkpoint(
    pool: asyncpg.Pool,
    p: Projection,
    seq: int,
    runner: ProjectionRunner,
    task: asyncio.Task[None],
    *,
    exact: bool = True,
) -> None:
    """Until the runner has committed ``seq`` (or more, unless ``exact``); fails fast if it
    died or stalled."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = await checkpoint(pool, p)
        if found is not None and found[1] >= seq:
            assert found[1] == seq or not exact, (found, seq)
            return
        if task.done():
            task.result()
            pytest.fail(f"runner of {p.schema} ended early")
        assert runner.state != "stalled", runner.error
        assert time.monotonic() < deadline, f"{p.schema} stuck at {found} (want {seq})"
        await asyncio.sleep(0.02)


async def stop_runner(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 10.0)


# --- 1. the property ---------------------------------------------------------------------------

names = (
    st.text(alphabet=string.ascii_letters + " -éß", min_size=1, max_size=10)
    .map(str.strip)
    .filter(bool)
)
ops = st.lists(
    st.tuples(
        st.sampled_from(
            ("create", "create", "rename", "rename", "update", "zone", "note", "delete", "other")
        ),
        st.sampled_from(BOARD_IDS),
        names,
        st.sampled_from(ACTORS),
    ),
    max_size=30,
)


def valid_steps(raw: Sequence[tuple[str, str, str, str]]) -> list[Step]:
    """What the Board aggregate would have emitted: create only a new board; rename, update, add
    a zone or a note to, or delete only a live one (rename to a different name); ``other`` is an
    event of another aggregate kind."""
    names_now: dict[str, str] = {}
    deleted: set[str] = set()
    steps: list[Step] = []
    for op, bid, name, actor in raw:
        n = len(steps)
        live = bid in names_now and bid not in deleted
        event: Event
        if op == "create" and bid not in names_now:
            names_now[bid] = name
            event = BoardCreated(board_id=bid, name=name, slug=f"{bid}-{n}")
        elif op == "rename" and live and names_now[bid] != name:
            names_now[bid] = name
            event = BoardRenamed(board_id=bid, name=name)
        elif op == "update" and live:
            names_now[bid] = name
            event = BoardUpdated(
                board_id=bid, name=name, icon=name[:1], color=None, background_color=None,
                description=f"{name} ({n})", context={"step": n, "name": name},
            )  # fmt: skip
        elif op == "zone" and live:
            zone = Zone(zone_id=f"z{n}", label=name, x=n, y=0, width=100, height=100)
            event = ZoneAdded(board_id=bid, zone=zone)
        elif op == "note" and live:
            event = NoteAdded(
                board_id=bid, note=Note(note_id=f"n{n}", kind="text", x=0, y=n, width=50)
            )
        elif op == "delete" and live:
            deleted.add(bid)
            event = BoardDeleted(board_id=bid, slug=f"{bid}-slug")
        elif op == "other":
            event = BoardCreated(board_id=bid, name=name, slug="elsewhere")
            steps.append(Step("card", f"c{n}", event, actor))
            continue
        else:
            continue
        steps.append(Step("board", bid, event, actor))
    return steps


@settings(
    max_examples=15,
    deadline=None,
    # pool and js are per test function on purpose: every example makes its own stream and schema
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=ops,
    batch=st.sampled_from((1, 2, 3, 7, 500)),
    before_start=st.floats(0.0, 1.0),
)
async def test_rebuild_gives_the_rows_the_live_runner_built(
    js: JetStreamContext,
    pool: asyncpg.Pool,
    raw: list[tuple[str, str, str, str]],
    batch: int,
    before_start: float,
) -> None:
    steps = valid_steps(raw)
    tok = token()
    stream, prefix = await fresh_stream(js, tok)
    try:
        projection = boards_projection(f"canvas_{tok}", stream, prefix)
        log = Log(js, stream, prefix)
        split = round(before_start * len(steps))
        for step in steps[:split]:
            await log.append(step)

        runner = ProjectionRunner(pool, js, projection, REGISTRY, batch=batch)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            for step in steps[split:]:  # while it runs
                await log.append(step)
            await wait_checkpoint(pool, projection, log.last_board_seq, runner, task)
            live = await table_rows(pool, projection.schema)
            assert live == log.rows()

            count = await rebuild(pool, js, projection, REGISTRY)
        finally:
            await stop_runner(stop, task)

        assert count == sum(s.kind == "board" for s in steps)
        assert await table_rows(pool, projection.schema) == live
        assert await checkpoint(pool, projection) == (projection.version, log.last_seq)
        assert not await pool.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", scratch_schema(projection)
        )
    finally:
        await js.delete_stream(stream)


# --- 2. a rebuild racing the live runner -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GatedBoards(BoardsProjection):
    """BoardsProjection whose rebuild (any schema but its own) waits at ``gate`` and announces
    it at ``reached``: the test decides when the rebuild may proceed."""

    gate: asyncio.Event = dataclasses.field(default_factory=asyncio.Event, compare=False)
    reached: asyncio.Event = dataclasses.field(default_factory=asyncio.Event, compare=False)

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        if schema != self.schema:
            self.reached.set()
            await asyncio.wait_for(self.gate.wait(), WAIT_S)
        await super().apply(conn, schema, events)


def history(boards: int, renames: int, tag: str) -> list[Step]:
    """Creates for ``boards`` fresh ids, then ``renames`` renames spread over them."""
    steps = [
        Step(
            "board",
            f"{tag}{i}",
            BoardCreated(board_id=f"{tag}{i}", name=f"{tag} {i}", slug=f"{tag}-{i}"),
            ACTORS[i % len(ACTORS)],
        )
        for i in range(boards)
    ]
    steps += [
        Step(
            "board",
            f"{tag}{i % boards}",
            BoardRenamed(board_id=f"{tag}{i % boards}", name=f"{tag} {i % boards} v{i}"),
            "ada",
        )
        for i in range(renames)
    ]
    return steps


async def test_rebuild_while_the_live_runner_applies_concurrent_appends(
    js: JetStreamContext, pool: asyncpg.Pool, unique: str
) -> None:
    stream, prefix = await fresh_stream(js, unique)
    try:
        log = Log(js, stream, prefix)
        # Rebuilt while running, and a twin that is only ever applied live, for comparison.
        rebuilt = GatedBoards(
            schema=f"canvas_{unique}", stream=stream, subjects=(f"{prefix}.evt.board.*",)
        )
        twin = boards_projection(f"twin_{unique}", stream, prefix)
        for step in history(40, 160, "a"):
            await log.append(step)
        initial = log.last_seq

        stops = [asyncio.Event(), asyncio.Event()]
        runners = [
            ProjectionRunner(pool, js, rebuilt, REGISTRY, batch=10),
            ProjectionRunner(pool, js, twin, REGISTRY, batch=500),
        ]
        tasks = [asyncio.create_task(r.run(s)) for r, s in zip(runners, stops, strict=True)]
        rebuilding: asyncio.Task[int] | None = None
        appending: asyncio.Task[None] | None = None
        try:
            await wait_checkpoint(pool, rebuilt, 1, runners[0], tasks[0], exact=False)  # under way
            rebuilding = asyncio.create_task(rebuild(pool, js, rebuilt, REGISTRY))
            # The rebuild has read its target (everything appended so far) and is replaying.
            await asyncio.wait_for(rebuilt.reached.wait(), WAIT_S)

            async def append_more() -> None:
                for i, step in enumerate(history(20, 180, "z")):
                    await log.append(step)
                    if i % 25 == 0:
                        await asyncio.sleep(0.01)  # let the runners interleave

            appending = asyncio.create_task(append_more())
            # Let the live runner commit well past the rebuild's target before it may finish, so
            # the switch has to replay what the runner applied meanwhile.
            await wait_checkpoint(pool, rebuilt, initial + 60, runners[0], tasks[0], exact=False)
            rebuilt.gate.set()
            count = await asyncio.wait_for(rebuilding, WAIT_S)
            await asyncio.wait_for(appending, WAIT_S)

            assert count >= initial + 60  # the switch caught up with the live runner
            for runner, projection, task in zip(runners, (rebuilt, twin), tasks, strict=True):
                await wait_checkpoint(pool, projection, log.last_seq, runner, task)
        finally:
            rebuilt.gate.set()
            for pending in (rebuilding, appending):  # only left running if the test failed
                if pending is not None and not pending.done():
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending
            for stop, task in zip(stops, tasks, strict=True):
                await stop_runner(stop, task)

        rows = await table_rows(pool, rebuilt.schema)
        assert len(rows) == 60
        assert rows == await table_rows(pool, twin.schema) == log.rows()
        assert await checkpoint(pool, rebuilt) == (rebuilt.version, log.last_seq)
        assert await pool.fetchval(
            f'SELECT rebuilt_at IS NOT NULL FROM "{rebuilt.schema}".orrery_projections'
            " WHERE name = $1",
            rebuilt.name,
        )
    finally:
        await js.delete_stream(stream)
