"""The canvas read model: ``BoardsProjection`` v2 (boards and everything on them) and
``WorktreeInfoProjection`` (the canvas's copy of the worktrees registry), on a real NATS and
PostgreSQL.

A realistic board history is appended through ``JetStreamEventStore`` (events shaped as the Board
aggregate emits them), applied live by ``ProjectionRunner`` in small batches and, as a twin, in
big ones, then rebuilt: the rebuilt tables equal the live ones row for row, and the gateway's
``CanvasReadModel`` reads the semantics the domain defines (a pinned card follows its zone,
replies nest under their thread, reactions are grouped, deleted comments and settled triggers
are left out), cross-checked against the Board aggregate's own fold of the same events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from nats.js import JetStreamContext
from orrery.canvas.domain import boards as domain
from orrery.canvas.projections.boards import BoardsProjection
from orrery.canvas.projections.worktrees import WorktreeInfoProjection, template_subjects
from orrery.events import Event, EventMeta, default_registry
from orrery.events import canvas as c
from orrery.events import worktrees as w
from orrery.events.sessions import AgentSettings
from orrery.gateway.canvas_model import BoardSnapshot, CanvasReadModel
from orrery.gateway.errors import ApiError
from orrery.runtime.clock import UUID7
from orrery.runtime.eventstore.jetstream import JetStreamEventStore
from orrery.runtime.projections import checkpoints
from orrery.runtime.projections.base import Projection
from orrery.runtime.projections.rebuild import rebuild
from orrery.runtime.projections.runner import ProjectionRunner
from orrery.runtime.topology import event_stream_config
from orrery.templating import RepoCtx, WorktreeCtx

pytestmark = pytest.mark.timeout(180)

ids = UUID7()
REGISTRY = default_registry()
WAIT_S = 30.0
B1, B2, B3 = "b1-roadmap", "b2-scratch", "b3-names"
TRIGGER = c.ZoneTrigger(
    template="Review {{ worktree.name }} on {{ board.name }}",
    behavior="show_picker",
    settings=AgentSettings(agent="claude-code", model="opus"),
)
SETTINGS = AgentSettings(agent="claude-code", model="opus")

BOARD_TABLES: dict[str, str] = {
    "boards": "board_id",
    "zones": "board_id, zone_id",
    "notes": "board_id, note_id",
    "cards": "board_id, worktree_id",
    "comments": "board_id, comment_id",
    "reactions": "board_id, comment_id, user_id, emoji",
    "triggers": "board_id, trigger_id",
}
WORKTREE_TABLES: dict[str, str] = {"repos": "repo_id", "worktrees": "worktree_id"}


# --- helpers -------------------------------------------------------------------------------------


async def fresh_stream(js: JetStreamContext, ctx: str, tok: str) -> tuple[str, str]:
    """A new stream with ``ctx``'s event stream settings; returns (stream, subject prefix)."""
    stream, prefix = f"CANVASPROJ_{ctx.upper()}_{tok}", f"p{ctx[:1]}{tok}"
    await js.add_stream(
        dataclasses.replace(
            event_stream_config(ctx),
            name=stream,
            subjects=[f"{prefix}.evt.>"],
            description="canvas projection test",
        )
    )
    return stream, prefix


class Log:
    """Appends events with increasing times; remembers each board's events and last sequence."""

    def __init__(self, js: JetStreamContext, stream: str, prefix: str) -> None:
        self.store = JetStreamEventStore(js, stream)
        self.prefix = prefix
        self.clock = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
        self.last_seq = 0
        self.board_seq: dict[str, int] = {}
        self.board_events: dict[str, list[Event]] = {}

    async def append(self, subject: str, event: Event, actor: str = "ada") -> int:
        self.clock += timedelta(seconds=1)
        result = await self.store.append(
            f"{self.prefix}.evt.{subject}",
            event,
            expected_seq=None,
            msg_id=ids.new(),
            meta=EventMeta(occurred_at=self.clock, actor=actor),
        )
        assert not result.duplicate
        self.last_seq = result.sequence
        return result.sequence

    async def board(self, event: Event, actor: str = "ada") -> int:
        board_id: str = getattr(event, "board_id", "")
        seq = await self.append(f"board.{board_id}", event, actor)
        self.board_seq[board_id] = seq
        self.board_events.setdefault(board_id, []).append(event)
        return seq


async def wait_applied(
    pool: asyncpg.Pool, p: Projection, seq: int, runner: ProjectionRunner, task: asyncio.Task[None]
) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        async with pool.acquire() as conn:
            found = await checkpoints.read(conn, p)
        if found is not None and found[1] >= seq:
            return
        if task.done():
            task.result()
            pytest.fail(f"runner of {p.schema}.{p.name} ended early")
        assert runner.state != "stalled", runner.error
        assert time.monotonic() < deadline, f"{p.schema}.{p.name} stuck at {found} (want {seq})"
        await asyncio.sleep(0.02)


async def dump(pool: asyncpg.Pool, schema: str, tables: dict[str, str]) -> dict[str, list[Any]]:
    """Every row of every table, in primary key order."""
    return {
        table: [
            tuple(r.values())
            for r in await pool.fetch(f'SELECT * FROM "{schema}"."{table}" ORDER BY {key}')
        ]
        for table, key in tables.items()
    }


def zone(zone_id: str, label: str, x: float, y: float, **more: Any) -> c.Zone:
    return c.Zone(zone_id=zone_id, label=label, x=x, y=y, width=400, height=300, **more)


def card(worktree_id: str, x: float, y: float, zone_id: str | None, *, placed: bool) -> c.CardMoved:
    return c.CardMoved(
        board_id=B1,
        worktree_id=worktree_id,
        x=x,
        y=y,
        width=400,
        height=240,
        zone_id=zone_id,
        placed=placed,
    )


def requested(trigger_id: str, worktree_id: str) -> c.ZoneTriggerRequested:
    return c.ZoneTriggerRequested(
        board_id=B1, trigger_id=trigger_id, zone_id="z-review", worktree_id=worktree_id
    )


def offered(trigger_id: str, worktree_id: str) -> c.ZoneTriggerOffered:
    return c.ZoneTriggerOffered(
        board_id=B1,
        trigger_id=trigger_id,
        zone_id="z-review",
        worktree_id=worktree_id,
        prompt=f"Review {worktree_id} on Roadmap",
        settings=SETTINGS,
        offered_to="ada",
    )


def comment(
    comment_id: str, author: str, anchor: c.Anchor, parent_id: str | None = None, text: str = ""
) -> c.CommentAdded:
    return c.CommentAdded(
        board_id=B1,
        comment_id=comment_id,
        content=text or f"comment {comment_id}",
        anchor=anchor,
        parent_id=parent_id,
        mentions=["bob"] if author == "ada" else [],
        author=author,
    )


def react(comment_id: str, user: str, emoji: str, *, on: bool) -> c.ReactionToggled:
    return c.ReactionToggled(board_id=B1, comment_id=comment_id, user=user, emoji=emoji, on=on)


# --- the history ---------------------------------------------------------------------------------


async def part_one(log: Log) -> None:
    """Boards, zones, notes, cards placed and pinned, the first triggers."""
    await log.board(c.BoardCreated(board_id=B1, name="Roadmap", slug="roadmap"))
    await log.board(c.BoardCreated(board_id=B3, name="Names", slug="names"), "bob")
    await log.board(c.BoardRenamed(board_id=B1, name="Roadmap 2026"))
    await log.board(c.BoardRenamed(board_id=B3, name="Names v2"), "bob")
    await log.board(
        c.BoardUpdated(
            board_id=B1,
            name="Roadmap 2026",
            icon="🗺",
            color="#1f6feb",
            background_color=None,
            description="What ships this year",
            context={"team": "core", "sprint": 7},
        )
    )
    await log.board(
        c.ZoneAdded(board_id=B1, zone=zone("z-review", "Review", 100, 100, trigger=TRIGGER))
    )
    await log.board(c.ZoneAdded(board_id=B1, zone=zone("z-done", "Done", 700, 100)))
    await log.board(c.ZoneAdded(board_id=B1, zone=zone("z-trash", "Trash", 1300, 100, locked=True)))
    await log.board(
        c.NoteAdded(
            board_id=B1,
            note=c.Note(note_id="n-md", kind="markdown", x=0, y=900, width=400, content="# Plan"),
        )
    )
    await log.board(
        c.NoteAdded(
            board_id=B1,
            note=c.Note(note_id="n-txt", kind="text", x=50, y=50, width=120, height=30),
        )
    )
    await log.board(
        c.NoteUpdated(
            board_id=B1,
            note=c.Note(
                note_id="n-md", kind="markdown", x=10, y=910, width=500, content="# Plan\n- ship"
            ),
        )
    )
    await log.board(c.NoteDeleted(board_id=B1, note_id="n-txt"))
    await log.board(card("wt-1", 0, 500, None, placed=True))
    # wt-1 dragged into Review: pinned, relative position, a trigger offered then fired.
    await log.board(card("wt-1", 50, 60, "z-review", placed=False))
    await log.board(requested("t-1", "wt-1"))
    await log.board(offered("t-1", "wt-1"), "system")
    await log.board(
        c.ZoneTriggerFired(
            board_id=B1,
            trigger_id="t-1",
            zone_id="z-review",
            worktree_id="wt-1",
            action="new_session",
            prompt="Review wt-1, carefully",
            settings=SETTINGS,
            session_id="s-1",
            title='Session from zone "Review"',
        )
    )
    # wt-2 placed straight into Review: its trigger fails to render.
    await log.board(card("wt-2", 10, 10, "z-review", placed=True), "bob")
    await log.board(requested("t-2", "wt-2"), "bob")
    await log.board(
        c.ZoneTriggerFailed(
            board_id=B1,
            trigger_id="t-2",
            zone_id="z-review",
            worktree_id="wt-2",
            code="template.undefined",
            message="'worktree' has no attribute 'nme' (line 1)",
        ),
        "system",
    )
    # wt-3: offered, still waiting for a choice.
    await log.board(card("wt-3", 200, 20, "z-review", placed=True))
    await log.board(requested("t-3", "wt-3"))
    await log.board(offered("t-3", "wt-3"), "system")
    await log.board(card("wt-4", 30, 40, "z-done", placed=True))
    for i in range(3):
        await log.board(c.BoardRenamed(board_id=B3, name=f"Names v{3 + i}"), "bob")


async def part_two(log: Log) -> None:
    """Zones moved and deleted with their cards, more triggers, comments and reactions, a board
    deleted."""
    # Review moves: its cards move with it.
    await log.board(
        c.ZoneUpdated(board_id=B1, zone=zone("z-review", "Review!", 150, 120, trigger=TRIGGER))
    )
    # wt-2 unpinned where it is (board coordinates).
    await log.board(
        c.CardUnpinned(board_id=B1, worktree_id="wt-2", zone_id="z-review", x=160, y=130)
    )
    # Trash unlocked, two cards put in it, deleted with its cards removed.
    await log.board(c.ZoneUpdated(board_id=B1, zone=zone("z-trash", "Trash", 1300, 100)))
    await log.board(card("wt-5", 0, 0, "z-trash", placed=True))
    await log.board(card("wt-6", 100, 50, "z-trash", placed=True))
    await log.board(c.CardRemoved(board_id=B1, worktree_id="wt-5"))
    await log.board(c.CardRemoved(board_id=B1, worktree_id="wt-6"))
    await log.board(c.ZoneDeleted(board_id=B1, zone_id="z-trash", cards="remove"))
    # Done deleted with its card unpinned (kept where it was: 700+30, 100+40).
    await log.board(c.CardUnpinned(board_id=B1, worktree_id="wt-4", zone_id="z-done", x=730, y=140))
    await log.board(c.ZoneDeleted(board_id=B1, zone_id="z-done", cards="unpin"))
    await log.board(c.CardRemoved(board_id=B1, worktree_id="wt-2"))
    # wt-7 enters Review and its trigger is dismissed; wt-8's is still being rendered.
    await log.board(card("wt-7", 0, 150, "z-review", placed=True))
    await log.board(requested("t-5", "wt-7"))
    await log.board(c.ZoneTriggerDismissed(board_id=B1, trigger_id="t-5"))
    await log.board(card("wt-8", 300, 150, "z-review", placed=True), "bob")
    await log.board(requested("t-6", "wt-8"), "bob")
    # Comments: two threads with replies, one comment deleted, one thread deleted.
    spot = c.Anchor(kind="board", x=40, y=40)
    on_review = c.Anchor(kind="zone", target_id="z-review", x=5, y=5)
    await log.board(comment("c-1", "ada", spot, text="Is this the plan?"))
    await log.board(comment("c-2", "bob", spot, parent_id="c-1", text="Yes"), "bob")
    await log.board(comment("c-3", "ada", on_review))
    await log.board(comment("c-4", "bob", on_review, parent_id="c-3"), "bob")
    await log.board(comment("c-5", "bob", c.Anchor(kind="worktree", target_id="wt-1")), "bob")
    await log.board(comment("c-6", "ada", spot, parent_id="c-1", text="never mind"))
    await log.board(c.CommentDeleted(board_id=B1, comment_id="c-6"))
    await log.board(
        c.CommentEdited(board_id=B1, comment_id="c-1", content="Is this THE plan?", mentions=[])
    )
    moved = c.Anchor(kind="board", x=400, y=-20)
    await log.board(c.CommentMoved(board_id=B1, comment_id="c-1", anchor=moved))
    await log.board(c.CommentResolved(board_id=B1, comment_id="c-3"))
    await log.board(c.CommentReopened(board_id=B1, comment_id="c-3"))
    await log.board(c.CommentResolved(board_id=B1, comment_id="c-1"))
    await log.board(c.CommentResolved(board_id=B1, comment_id="c-5"), "bob")
    await log.board(react("c-1", "ada", "👍", on=True))
    await log.board(react("c-1", "bob", "👍", on=True), "bob")
    await log.board(react("c-1", "bob", "🎉", on=True), "bob")
    await log.board(react("c-1", "carol", "👍", on=True), "carol")
    await log.board(react("c-1", "carol", "👍", on=False), "carol")
    await log.board(react("c-2", "ada", "❤", on=True))
    await log.board(react("c-3", "ada", "👀", on=True))
    await log.board(c.CommentDeleted(board_id=B1, comment_id="c-3"))  # takes c-4 with it
    # A scratch board, used then deleted.
    await log.board(c.BoardCreated(board_id=B2, name="Scratch", slug="scratch"), "bob")
    await log.board(c.ZoneAdded(board_id=B2, zone=zone("z-x", "X", 0, 0)), "bob")
    await log.board(c.BoardDeleted(board_id=B2, slug="scratch"), "bob")
    # A new board reusing the deleted one's slug.
    await log.board(c.BoardCreated(board_id="b4-scratch", name="Scratch 2", slug="scratch"))
    await log.board(c.BoardRenamed(board_id=B3, name="Names, finally"), "bob")


# --- the domain's view, to cross-check the read model --------------------------------------------


def domain_state(events: Sequence[Event]) -> domain.Board:
    state = domain.Board()
    for event in events:
        state = domain.evolve(state, event)
    return state


def check_against_domain(snapshot: BoardSnapshot, state: domain.Board) -> None:
    assert [z.id for z in snapshot.zones] == list(state.zones)  # bottom to top
    for out in snapshot.zones:
        expected = state.zones[out.id]
        assert (out.label, out.x, out.y, out.locked) == (
            expected.label,
            expected.x,
            expected.y,
            expected.locked,
        )
        assert out.trigger == msgspec.to_builtins(expected.trigger)
    assert {n.id: n.content for n in snapshot.notes} == {
        k: n.content for k, n in state.notes.items()
    }
    assert {k.worktree_id: (k.abs_x, k.abs_y, k.zone_id) for k in snapshot.cards} == {
        k: (*domain.absolute(state, v), v.zone_id) for k, v in state.cards.items()
    }
    live = {k: v for k, v in state.comments.items() if not v.deleted}
    shown = {t.id: t for t in snapshot.comments} | {
        r.id: r for t in snapshot.comments for r in t.replies
    }
    assert set(shown) == set(live)
    for cid, shown_comment in shown.items():
        expected_c = live[cid]
        assert shown_comment.anchor == msgspec.to_builtins(expected_c.anchor)
        assert shown_comment.parent_id == expected_c.parent_id
        assert shown_comment.author == expected_c.author
        assert shown_comment.resolved == expected_c.resolved
        given = {(u, r.emoji) for r in shown_comment.reactions for u in r.users}
        assert given == set(expected_c.reactions)
    assert {t.id for t in snapshot.triggers} == set(state.pending)


async def check_part_one(model: CanvasReadModel, log: Log) -> None:
    """Before the zone moves: a pinned card's board position is the zone's plus its own."""
    before = await model.snapshot(B1)
    assert before.seq == log.board_seq[B1] == before.board.last_seq
    cards = {k.worktree_id: k for k in before.cards}
    assert (cards["wt-1"].x, cards["wt-1"].y) == (50, 60)  # relative to Review
    assert (cards["wt-1"].abs_x, cards["wt-1"].abs_y) == (150, 160)
    assert {t.id: t.status for t in before.triggers} == {"t-3": "offered"}
    check_against_domain(before, domain_state(log.board_events[B1]))


def check_board(snapshot: BoardSnapshot, log: Log) -> None:
    """The board's fields, and a snapshot as of its newest event (a comment's, a card's...)."""
    board = snapshot.board
    assert snapshot.seq == board.last_seq == log.board_seq[B1]
    assert (board.name, board.icon, board.color, board.description) == (
        "Roadmap 2026",
        "🗺",
        "#1f6feb",
        "What ships this year",
    )
    assert board.context == {"team": "core", "sprint": 7}
    assert (board.created_by, board.deleted) == ("ada", False)
    assert board.updated_at > board.created_at


async def check_objects(model: CanvasReadModel, snapshot: BoardSnapshot, log: Log) -> None:
    """Zones, notes and cards."""
    # Zones: Trash and Done are gone; Review moved, and its cards with it.
    assert [(z.id, z.label, z.x, z.y, z.z) for z in snapshot.zones] == [
        ("z-review", "Review!", 150, 120, 0)
    ]
    assert snapshot.zones[0].trigger == {
        "template": TRIGGER.template,
        "behavior": "show_picker",
        "settings": msgspec.to_builtins(SETTINGS),
    }
    assert [(n.id, n.content, n.width) for n in snapshot.notes] == [("n-md", "# Plan\n- ship", 500)]
    cards = {k.worktree_id: k for k in snapshot.cards}
    assert set(cards) == {"wt-1", "wt-3", "wt-4", "wt-7", "wt-8"}
    assert (cards["wt-1"].x, cards["wt-1"].y, cards["wt-1"].zone_id) == (50, 60, "z-review")
    assert (cards["wt-1"].abs_x, cards["wt-1"].abs_y) == (200, 180)  # followed the zone
    assert (cards["wt-4"].abs_x, cards["wt-4"].abs_y, cards["wt-4"].zone_id) == (730, 140, None)
    assert cards["wt-8"].placed_by == "bob"
    assert await model.card(B1, "wt-1") == cards["wt-1"]
    with pytest.raises(ApiError) as gone:
        await model.card(B1, "wt-5")
    assert (gone.value.status, gone.value.code) == (404, "card.not_found")


async def check_comments(model: CanvasReadModel, snapshot: BoardSnapshot, log: Log) -> None:
    """Threads, replies, reactions."""
    # Comments: c-1's thread (moved, resolved, edited) with its live reply; c-5 alone.
    threads = snapshot.comments
    assert [t.id for t in threads] == ["c-1", "c-5"]
    first = threads[0]
    assert (first.content, first.edited, first.resolved) == ("Is this THE plan?", True, True)
    assert first.anchor == {"kind": "board", "target_id": None, "x": 400, "y": -20}
    assert [r.id for r in first.replies] == ["c-2"]  # c-6 deleted
    assert first.replies[0].anchor == first.anchor  # moved with its thread
    assert first.replies[0].parent_id == "c-1"
    assert [(r.emoji, r.users) for r in first.reactions] == [
        ("🎉", ["bob"]),
        ("👍", ["ada", "bob"]),
    ]
    assert [(r.emoji, r.users) for r in first.replies[0].reactions] == [("❤", ["ada"])]
    assert first.mentions == []
    assert threads[1].anchor == {"kind": "worktree", "target_id": "wt-1", "x": None, "y": None}
    assert threads[1].replies == []
    assert await model.comment(B1, "c-1") == first
    assert (await model.comment(B1, "c-2")).replies == []
    for deleted in ("c-3", "c-4", "c-6"):
        with pytest.raises(ApiError) as missing:
            await model.comment(B1, deleted)
        assert (missing.value.status, missing.value.code) == (404, "comment.not_found")


async def check_triggers(model: CanvasReadModel, snapshot: BoardSnapshot, log: Log) -> None:
    """Triggers: the waiting ones in the snapshot, each readable by id."""
    # Triggers: only the waiting ones in the snapshot; every one readable by id.
    assert [(t.id, t.status) for t in snapshot.triggers] == [
        ("t-3", "offered"),
        ("t-6", "requested"),
    ]
    offer = snapshot.triggers[0]
    assert (offer.prompt, offer.offered_to, offer.worktree_id) == (
        "Review wt-3 on Roadmap",
        "ada",
        "wt-3",
    )
    assert offer.settings == msgspec.to_builtins(SETTINGS)
    fired = await model.trigger(B1, "t-1")
    assert (fired.status, fired.action, fired.session_id, fired.prompt) == (
        "fired",
        "new_session",
        "s-1",
        "Review wt-1, carefully",
    )
    failed = await model.trigger(B1, "t-2")
    assert (failed.status, failed.code, failed.requested_by) == (
        "failed",
        "template.undefined",
        "bob",
    )
    assert (await model.trigger(B1, "t-5")).status == "dismissed"
    latest = await model.latest_trigger(B1, "wt-8")
    assert latest is not None and latest.id == "t-6"
    assert await model.latest_trigger(B1, "wt-4") is None
    with pytest.raises(ApiError) as no_trigger:
        await model.trigger(B1, "t-404")
    assert no_trigger.value.code == "trigger.not_found"
    assert (await model.zone(B1, "z-review")).label == "Review!"
    with pytest.raises(ApiError) as no_zone:
        await model.zone(B1, "z-done")
    assert no_zone.value.code == "zone.not_found"


async def check_boards(model: CanvasReadModel, snapshot: BoardSnapshot, log: Log) -> None:
    """Board lookups, lists and slugs."""
    # Boards: deleted ones out of the list and of slug lookups, but readable by exact id.
    listed = await model.boards()
    assert [b.id for b in listed] == ["b0-early", B1, B3, "b4-scratch"]
    assert [b.id for b in await model.boards(include_deleted=True)] == [
        "b0-early",
        B1,
        B3,
        B2,
        "b4-scratch",
    ]
    scratch = await model.board(B2)
    assert scratch.deleted and scratch.last_seq == log.board_seq[B2]
    assert (await model.board("scratch")).id == "b4-scratch"
    assert (await model.board("roadmap")).id == B1
    assert (await model.board("b1-")).id == B1
    with pytest.raises(ApiError) as ambiguous:
        await model.board("b")
    assert (ambiguous.value.status, ambiguous.value.code) == (409, "board.ambiguous")
    with pytest.raises(ApiError) as nothing:
        await model.board("nope")
    assert (nothing.value.status, nothing.value.code) == (404, "board.not_found")
    assert await model.slug_taken("scratch")
    assert await model.slug_taken("roadmap")
    assert not await model.slug_taken("nope")
    early = await model.snapshot("b0-early")
    assert early.board.name == "Early bird" and early.seq == log.board_seq["b0-early"]
    assert (early.zones, early.cards, early.comments, early.triggers) == ([], [], [], [])


# --- the tests -----------------------------------------------------------------------------------


async def test_boards_projection_live_equals_rebuilt_and_reads_as_the_domain(
    js: JetStreamContext, pool: asyncpg.Pool, unique: str
) -> None:
    stream, prefix = await fresh_stream(js, "canvas", unique)
    try:
        subjects = (f"{prefix}.evt.board.*",)
        # The gateway reads schema "canvas" (the database is this test's own).
        live = dataclasses.replace(BoardsProjection(), stream=stream, subjects=subjects)
        twin = dataclasses.replace(live, schema=f"twin_{unique}")
        model = CanvasReadModel(pool)
        log = Log(js, stream, prefix)
        # Some history before the runners start, the rest while they run.
        await log.board(c.BoardCreated(board_id="b0-early", name="Early", slug="early"))
        await log.board(c.BoardRenamed(board_id="b0-early", name="Early bird"))

        runners = [
            ProjectionRunner(pool, js, live, REGISTRY, batch=3),
            ProjectionRunner(pool, js, twin, REGISTRY, batch=500),
        ]
        stops = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(r.run(s)) for r, s in zip(runners, stops, strict=True)]
        try:
            await part_one(log)
            await wait_applied(pool, live, log.last_seq, runners[0], tasks[0])
            await model.caught_up(log.last_seq)

            await check_part_one(model, log)

            await part_two(log)
            for runner, projection, task in zip(runners, (live, twin), tasks, strict=True):
                await wait_applied(pool, projection, log.last_seq, runner, task)
            rows = await dump(pool, "canvas", BOARD_TABLES)
            assert rows == await dump(pool, twin.schema, BOARD_TABLES)  # batch size is moot
            count = await rebuild(pool, js, live, REGISTRY)
            assert count == log.last_seq
            rebuilt = await dump(pool, "canvas", BOARD_TABLES)
            assert rebuilt == rows
            # The runner carries on into the rebuilt tables.
            await log.board(c.BoardRenamed(board_id=B3, name="Names, really"), "bob")
            await wait_applied(pool, live, log.last_seq, runners[0], tasks[0])
        finally:
            for stop, task in zip(stops, tasks, strict=True):
                stop.set()
                await asyncio.wait_for(task, 10.0)

        assert (await model.board(B3)).name == "Names, really"
        snapshot = await model.snapshot(B1)
        check_against_domain(snapshot, domain_state(log.board_events[B1]))
        check_board(snapshot, log)
        await check_objects(model, snapshot, log)
        await check_comments(model, snapshot, log)
        await check_triggers(model, snapshot, log)
        await check_boards(model, snapshot, log)
    finally:
        await js.delete_stream(stream)


async def test_read_model_without_tables_is_empty(pool: asyncpg.Pool) -> None:
    model = CanvasReadModel(pool)
    assert await model.boards() == []
    assert not await model.slug_taken("roadmap")
    assert await model.latest_trigger("b", "w") is None
    for call in (
        model.board("roadmap"),
        model.snapshot("b"),
        model.zone("b", "z"),
        model.card("b", "w"),
        model.comment("b", "c"),
        model.trigger("b", "t"),
    ):
        with pytest.raises(ApiError) as missing:
            await call
        assert missing.value.status == 404
    assert await template_subjects(pool, "wt-1") is None


async def test_worktree_info_feeds_the_template_context(
    js: JetStreamContext, pool: asyncpg.Pool, unique: str
) -> None:
    stream, prefix = await fresh_stream(js, "worktrees", unique)
    try:
        projection = dataclasses.replace(
            WorktreeInfoProjection(), stream=stream, subjects=(f"{prefix}.evt.registry.*",)
        )
        log = Log(js, stream, prefix)

        async def registry(event: Event) -> int:
            return await log.append("registry.all", event)

        await registry(w.RepoAddRequested(repo_id="r-1", slug="orrery", source="/src", adopt=True))
        await registry(
            w.RepoAdded(
                repo_id="r-1",
                slug="orrery",
                path="/repos/orrery",
                default_branch="main",
                remote_url="git@example.com:o/orrery.git",
                adopted=True,
                settings=w.RepoSettings(),
            )
        )
        await registry(w.RepoAddFailed(repo_id="r-2", slug="broken", code="x", message="y"))
        await registry(
            w.WorktreeRequested(
                worktree_id="wt-1",
                repo_id="r-1",
                name="feature-x",
                branch="feature/x",
                base="main",
                new_branch=True,
                unique_id=3,
                ports=[4030, 4031],
                issue_url="https://example.com/i/1",
                context={"ticket": "X-1"},
            )
        )
        # Noise on another subject of the stream: filtered out.
        await log.append("env.wt-1", w.EnvironmentLogsRequested(worktree_id="wt-1"))
        await registry(
            w.WorktreeRequested(
                worktree_id="wt-2",
                repo_id="r-1",
                name="broken",
                branch="broken",
                base=None,
                new_branch=True,
                unique_id=4,
                ports=[4040],
            )
        )

        runner = ProjectionRunner(pool, js, projection, REGISTRY, batch=2)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            await wait_applied(pool, projection, log.last_seq, runner, task)
            assert await template_subjects(pool, "wt-1") is None  # no path yet: being created
            await registry(
                w.WorktreeCreated(
                    worktree_id="wt-1",
                    repo_id="r-1",
                    path="/wt/feature-x",
                    branch="feature/x",
                    head_sha="abc",
                    base_ref="main",
                    environment=None,
                )
            )
            await registry(
                w.WorktreeCreationFailed(
                    worktree_id="wt-2", repo_id="r-1", code="git", message="no"
                )
            )
            await registry(
                w.WorktreeUpdated(
                    worktree_id="wt-1",
                    issue_url="https://example.com/i/1",
                    pull_request_url="https://example.com/p/2",
                    notes="careful",
                    context={"ticket": "X-1", "owner": "ada"},
                )
            )
            await wait_applied(pool, projection, log.last_seq, runner, task)
            found = await template_subjects(pool, "wt-1")
            assert found == (
                RepoCtx(
                    slug="orrery",
                    name="orrery",
                    default_branch="main",
                    remote_url="git@example.com:o/orrery.git",
                    path="/repos/orrery",
                ),
                WorktreeCtx(
                    name="feature-x",
                    ref="feature/x",
                    path="/wt/feature-x",
                    unique_id=3,
                    ports=[4030, 4031],
                    issue_url="https://example.com/i/1",
                    pull_request_url="https://example.com/p/2",
                    notes="careful",
                    context={"ticket": "X-1", "owner": "ada"},
                ),
            )
            assert await template_subjects(pool, "wt-2") is None  # failed
            assert await template_subjects(pool, "wt-404") is None

            await registry(w.WorktreeArchived(worktree_id="wt-1", filesystem="preserved"))
            await registry(w.WorktreeUnarchived(worktree_id="wt-1", unique_id=5, ports=[4050]))
            await registry(w.RepoAddRequested(repo_id="r-3", slug="gone", source="/g", adopt=False))
            await registry(
                w.RepoAdded(
                    repo_id="r-3",
                    slug="gone",
                    path="/repos/gone",
                    default_branch="trunk",
                    remote_url=None,
                    adopted=False,
                    settings=w.RepoSettings(),
                )
            )
            await registry(
                w.RepoRemoved(repo_id="r-3", slug="gone", path="/repos/gone", delete_files=True)
            )
            await wait_applied(pool, projection, log.last_seq, runner, task)
            rows = await dump(pool, "canvas", WORKTREE_TABLES)
            count = await rebuild(pool, js, projection, REGISTRY)
            assert count == log.last_seq - 1  # all but the env event
            assert await dump(pool, "canvas", WORKTREE_TABLES) == rows
        finally:
            stop.set()
            await asyncio.wait_for(task, 10.0)

        assert rows["repos"] == [
            ("r-1", "orrery", "/repos/orrery", "main", "git@example.com:o/orrery.git", "active"),
            ("r-3", "gone", "/repos/gone", "trunk", None, "removed"),
        ]
        statuses = {r[0]: (r[5], r[6], r[-1]) for r in rows["worktrees"]}
        assert statuses == {"wt-1": (5, "[4050]", "active"), "wt-2": (None, "[]", "failed")}
        again = await template_subjects(pool, "wt-1")
        assert again is not None
        assert (again[1].unique_id, again[1].ports) == (5, [4050])
    finally:
        await js.delete_stream(stream)
