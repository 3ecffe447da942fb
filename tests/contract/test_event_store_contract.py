"""One contract, two event stores: the in-memory fake must behave exactly like JetStream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from orrery.events import EventMeta
from orrery.events.canvas import BoardCreated, BoardRenamed
from orrery.runtime.clock import UUID7
from orrery.runtime.errors import ConcurrencyConflict
from orrery.runtime.eventstore.base import EventStore
from orrery.runtime.eventstore.jetstream import JetStreamEventStore
from orrery.runtime.eventstore.memory import InMemoryEventStore
from orrery.runtime.topology import event_stream_config

ids = UUID7()


def meta(
    actor: str = "system", correlation_id: str | None = None, causation_id: str | None = None
) -> EventMeta:
    return EventMeta(
        occurred_at=datetime.now(UTC),
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )


async def jetstream_store(js: JetStreamContext, unique: str) -> JetStreamEventStore:
    base = event_stream_config("canvas")
    name = f"CONTRACT_{unique}"
    await js.add_stream(
        StreamConfig(
            name=name,
            subjects=[f"c{unique}.evt.>"],
            duplicate_window=base.duplicate_window,
            deny_delete=True,
            deny_purge=True,
            allow_direct=True,
        )
    )
    return JetStreamEventStore(js, name)


@pytest_asyncio.fixture(params=["memory", "jetstream"])
async def store(
    request: pytest.FixtureRequest, js: JetStreamContext, unique: str
) -> AsyncIterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore()
    else:
        yield await jetstream_store(js, unique)


@pytest.fixture
def subject(unique: str) -> str:
    return f"c{unique}.evt.board.b1"


async def test_append_then_load_returns_events_in_order(store: EventStore, subject: str) -> None:
    first = await store.append(
        subject,
        BoardCreated(board_id="b1", name="One", slug="one"),
        expected_seq=0,
        msg_id="m1",
        meta=meta(actor="ada", correlation_id="c1"),
    )
    second = await store.append(
        subject,
        BoardRenamed(board_id="b1", name="Uno"),
        expected_seq=first.sequence,
        msg_id="m2",
        meta=meta(causation_id="cmd-1"),
    )
    loaded = await store.load(subject)
    assert [e.event for e in loaded] == [
        BoardCreated(board_id="b1", name="One", slug="one"),
        BoardRenamed(board_id="b1", name="Uno"),
    ]
    assert [e.sequence for e in loaded] == [first.sequence, second.sequence]
    assert second.sequence > first.sequence
    assert loaded[0].actor == "ada" and loaded[0].correlation_id == "c1"
    assert loaded[1].causation_id == "cmd-1"
    assert loaded[0].type == "canvas.BoardCreated" and loaded[0].version == 1
    assert loaded[0].subject == subject and loaded[0].stream == store.stream
    assert await store.last_sequence(subject) == second.sequence


@pytest.mark.parametrize("count", [3, 40])  # a few (direct gets) and more than a handful
async def test_load_after_a_sequence_returns_only_newer_events(
    store: EventStore, subject: str, unique: str, count: int
) -> None:
    other = f"c{unique}.evt.board.b2"
    seqs = []
    for i in range(count):
        result = await store.append(
            subject,
            BoardRenamed(board_id="b1", name=f"n{i}"),
            expected_seq=None,
            msg_id=f"a{i}",
            meta=meta(actor="ada"),
        )
        seqs.append(result.sequence)
        await store.append(  # interleaved: stream sequences of the subject are not contiguous
            other,
            BoardRenamed(board_id="b2", name="x"),
            expected_seq=None,
            msg_id=f"b{i}",
            meta=meta(),
        )
    newer = await store.load(subject, after=seqs[0])
    assert [e.sequence for e in newer] == seqs[1:]
    assert [e.event for e in newer] == [
        BoardRenamed(board_id="b1", name=f"n{i}") for i in range(1, count)
    ]
    assert all(e.actor == "ada" and e.subject == subject for e in newer)
    assert await store.load(subject, after=seqs[-1]) == []


async def test_unknown_subject_loads_empty(store: EventStore, subject: str) -> None:
    assert await store.load(subject) == []
    assert await store.last_sequence(subject) == 0


async def test_stale_expected_sequence_raises_conflict(store: EventStore, subject: str) -> None:
    first = await store.append(
        subject,
        BoardCreated(board_id="b1", name="One", slug="one"),
        expected_seq=0,
        msg_id="m1",
        meta=meta(),
    )
    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append(
            subject,
            BoardRenamed(board_id="b1", name="x"),
            expected_seq=0,
            msg_id="m2",
            meta=meta(),
        )
    assert caught.value.code == "store.conflict"
    assert caught.value.actual == first.sequence
    assert len(await store.load(subject)) == 1


async def test_expected_zero_means_subject_must_be_empty(store: EventStore, subject: str) -> None:
    await store.append(
        subject,
        BoardCreated(board_id="b1", name="One", slug="one"),
        expected_seq=0,
        msg_id="m1",
        meta=meta(),
    )
    with pytest.raises(ConcurrencyConflict):
        await store.append(
            subject,
            BoardCreated(board_id="b1", name="Two", slug="two"),
            expected_seq=0,
            msg_id="m2",
            meta=meta(),
        )


async def test_same_msg_id_twice_stores_one_event(store: EventStore, subject: str) -> None:
    event = BoardCreated(board_id="b1", name="One", slug="one")
    first = await store.append(subject, event, expected_seq=0, msg_id="same", meta=meta())
    # The retry carries the same expected sequence as the first attempt: dedup wins over
    # the sequence check, so a retried append whose first attempt landed is not a conflict.
    again = await store.append(subject, event, expected_seq=0, msg_id="same", meta=meta())
    assert again.duplicate and not first.duplicate
    assert again.sequence == first.sequence
    assert len(await store.load(subject)) == 1


async def test_no_expected_sequence_skips_the_check(store: EventStore, subject: str) -> None:
    for i in range(3):
        await store.append(
            subject,
            BoardRenamed(board_id="b1", name=f"n{i}"),
            expected_seq=None,
            msg_id=f"m{i}",
            meta=meta(),
        )
    assert [e.event.name for e in await store.load(subject)] == ["n0", "n1", "n2"]  # type: ignore[attr-defined]


async def test_subjects_are_independent(store: EventStore, unique: str) -> None:
    a, b = f"c{unique}.evt.board.a", f"c{unique}.evt.board.b"
    await store.append(
        a, BoardCreated(board_id="a", name="A", slug="a"), expected_seq=0, msg_id="ma", meta=meta()
    )
    # b is still empty, so expected 0 is right for it even though the stream moved on.
    await store.append(
        b, BoardCreated(board_id="b", name="B", slug="b"), expected_seq=0, msg_id="mb", meta=meta()
    )
    assert [e.event.board_id for e in await store.load(a)] == ["a"]  # type: ignore[attr-defined]
    assert [e.event.board_id for e in await store.load(b)] == ["b"]  # type: ignore[attr-defined]


async def test_concurrent_writers_accepted_equals_stored(store: EventStore, subject: str) -> None:
    """8 writers race on one subject, each retrying on conflict: every accepted append is
    stored exactly once, and nothing else is."""
    accepted: list[int] = []
    conflicts = 0

    async def writer(w: int) -> None:
        nonlocal conflicts
        for i in range(15):
            while True:
                last = await store.last_sequence(subject)
                try:
                    result = await store.append(
                        subject,
                        BoardRenamed(board_id="b1", name=f"w{w}-{i}"),
                        expected_seq=last,
                        msg_id=f"w{w}-{i}",
                        meta=meta(),
                    )
                except ConcurrencyConflict:
                    conflicts += 1
                    await asyncio.sleep(0)
                    continue
                accepted.append(result.sequence)
                break

    await asyncio.gather(*(writer(w) for w in range(8)))
    stored = await store.load(subject)
    assert sorted(accepted) == [e.sequence for e in stored]
    assert len(stored) == 8 * 15
    assert len({e.event.name for e in stored}) == 8 * 15  # type: ignore[attr-defined]


async def test_retry_after_others_wrote_is_a_conflict(store: EventStore, subject: str) -> None:
    """A retry whose first attempt landed but was followed by someone else's event cannot be
    told apart from a stale write by the store: it conflicts, and the command loop's reload
    finds the landed event by its causation id."""
    first = await store.append(
        subject,
        BoardCreated(board_id="b1", name="A", slug="a"),
        expected_seq=0,
        msg_id="mine",
        meta=meta(),
    )
    await store.append(
        subject,
        BoardRenamed(board_id="b1", name="B"),
        expected_seq=first.sequence,
        msg_id="theirs",
        meta=meta(),
    )
    with pytest.raises(ConcurrencyConflict):
        await store.append(
            subject,
            BoardCreated(board_id="b1", name="A", slug="a"),
            expected_seq=0,
            msg_id="mine",
            meta=meta(),
        )
    assert len(await store.load(subject)) == 2
