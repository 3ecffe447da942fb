"""The command loop on the in-memory store: decide, append, reject, retry, redeliver."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from orrery.canvas.main import HANDLERS
from orrery.events import EventMeta, subjects
from orrery.events.canvas import BoardCreated, BoardRenamed, CreateBoard, RenameBoard
from orrery.events.common import CommandRejected
from orrery.events.errors import Rejection
from orrery.runtime.clock import UUID7
from orrery.runtime.commands.handling import CommandBus, Outcome
from orrery.runtime.errors import ConcurrencyConflict
from orrery.runtime.eventstore.memory import InMemoryEventStore


class FixedClock:
    def now(self) -> datetime:
        return datetime(2026, 11, 22, tzinfo=UTC)


def bus(store: InMemoryEventStore) -> CommandBus:
    return CommandBus("canvas", store, HANDLERS, FixedClock(), UUID7())


META = EventMeta(occurred_at=datetime(2026, 11, 22, tzinfo=UTC), actor="ada")
BOARD = subjects.event_subject("canvas", "board", "b1")


async def test_accepted_command_appends_events_caused_by_it() -> None:
    store = InMemoryEventStore()
    outcome = await bus(store).execute(
        CreateBoard(command_id="c1", board_id="b1", name=" Main ", slug="main"), META
    )
    assert outcome is Outcome.ACCEPTED
    [stored] = await store.load(BOARD)
    assert stored.event == BoardCreated(board_id="b1", name="Main", slug="main")
    assert (stored.causation_id, stored.correlation_id, stored.actor) == ("c1", "c1", "ada")


async def test_domain_refusal_is_a_rejection_with_a_code() -> None:
    store = InMemoryEventStore()
    b = bus(store)
    await b.execute(CreateBoard(command_id="c1", board_id="b1", name="M", slug="main"), META)
    with pytest.raises(Rejection) as caught:
        await b.execute(CreateBoard(command_id="c2", board_id="b1", name="M", slug="main"), META)
    assert caught.value.code == "board.exists"
    await b.reject("c2", "canvas.CreateBoard", caught.value, META)
    [rejected] = await store.load(subjects.rejection_subject("canvas", "c2"))
    assert rejected.event == CommandRejected(
        command_id="c2",
        command_type="canvas.CreateBoard",
        code="board.exists",
        message="board b1 already exists",
    )


async def test_redelivered_command_is_not_applied_twice() -> None:
    store = InMemoryEventStore()
    b = bus(store)
    command = CreateBoard(command_id="c1", board_id="b1", name="M", slug="main")
    assert await b.execute(command, META) is Outcome.ACCEPTED
    # Delivered again (the ack was lost): the decision is retaken on the history without its
    # own events, finds them stored, and appends nothing, even past the dedup window.
    store._msg_ids.clear()
    assert await b.execute(command, META) is Outcome.ALREADY_DONE
    assert len(await store.load(BOARD)) == 1


async def test_conflict_is_retried_with_a_fresh_load() -> None:
    store = InMemoryEventStore()
    b = bus(store)
    await b.execute(CreateBoard(command_id="c1", board_id="b1", name="M", slug="main"), META)
    real_append = store.append
    raced = False

    async def racing_append(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal raced
        if not raced:  # another writer lands between our load and our append
            raced = True
            await real_append(
                BOARD,
                BoardRenamed(board_id="b1", name="Other"),
                expected_seq=None,
                msg_id="other",
                meta=META,
            )
        return await real_append(*args, **kwargs)

    store.append = racing_append  # type: ignore[method-assign]
    assert await b.execute(RenameBoard(command_id="c2", board_id="b1", name="Mine"), META) is (
        Outcome.ACCEPTED
    )
    assert [e.event.name for e in await store.load(BOARD)][1:] == ["Other", "Mine"]  # type: ignore[attr-defined]


async def test_conflicts_beyond_the_bound_surface() -> None:
    store = InMemoryEventStore()
    b = bus(store)
    await b.execute(CreateBoard(command_id="c1", board_id="b1", name="M", slug="main"), META)

    async def always_conflict(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConcurrencyConflict(BOARD, 1, 2)

    store.append = always_conflict  # type: ignore[method-assign]
    with pytest.raises(ConcurrencyConflict):
        await b.execute(RenameBoard(command_id="c2", board_id="b1", name="x"), META)


async def test_a_stale_cache_never_decides_wrongly() -> None:
    """Two buses (two replicas) on one store: each decides on its cached state first; an append
    on a moved subject conflicts and is decided again, a no-op is confirmed before it counts."""
    store = InMemoryEventStore()
    a, b = bus(store), bus(store)
    await a.execute(CreateBoard(command_id="c1", board_id="b1", name="One", slug="one"), META)
    await a.execute(RenameBoard(command_id="c2", board_id="b1", name="Two"), META)
    await b.execute(RenameBoard(command_id="c3", board_id="b1", name="Three"), META)
    # a's cache says "Two": renaming to "Two" looks like a no-op there, but it is not.
    assert await a.execute(RenameBoard(command_id="c4", board_id="b1", name="Two"), META) is (
        Outcome.ACCEPTED
    )
    await b.execute(RenameBoard(command_id="c5", board_id="b1", name="Four"), META)
    # a's cache is behind again: its append conflicts, it reads the log and decides again.
    await a.execute(RenameBoard(command_id="c6", board_id="b1", name="Five"), META)
    names = [e.event.name for e in await store.load(BOARD) if isinstance(e.event, BoardRenamed)]
    assert names == ["Two", "Three", "Two", "Four", "Five"]
    # A true no-op on a current cache appends nothing.
    assert await a.execute(RenameBoard(command_id="c7", board_id="b1", name="Five"), META) is (
        Outcome.ACCEPTED
    )
    assert len(await store.load(BOARD)) == 6
