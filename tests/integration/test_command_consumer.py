"""The command consumer against real NATS: each outcome ends in the right disposition."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from nats.js import JetStreamContext
from orrery.canvas.main import HANDLERS
from orrery.events import EventMeta, TraceContext, codec, default_registry, subjects
from orrery.events.canvas import CreateBoard
from orrery.events.common import CommandRejected
from orrery.events.errors import DecodingError, Rejection
from orrery.runtime import topology
from orrery.runtime.clock import UUID7, SystemClock
from orrery.runtime.commands.consumer import CommandConsumer, Disposition, disposition_of
from orrery.runtime.commands.handling import CommandBus
from orrery.runtime.errors import ConcurrencyConflict, InfrastructureError
from orrery.runtime.eventstore.jetstream import JetStreamEventStore


async def _fresh_context(js: JetStreamContext) -> None:
    """The canvas streams, emptied: command tests own the whole canvas context."""
    for config in topology.stream_configs("canvas"):
        try:
            await js.delete_stream(config.name or "")
        except Exception:
            pass
    await topology.ensure_context(js, "canvas")


TRACE = TraceContext(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


async def _send(js: JetStreamContext, command: CreateBoard) -> None:
    meta = EventMeta(occurred_at=datetime.now(UTC), actor="ada", trace=TRACE)
    await js.publish(
        subjects.command_subject("canvas", "CreateBoard"),
        codec.encode(command),
        headers=codec.command_headers(command, meta),
    )


async def _run_until(consumer: CommandConsumer, check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        async with asyncio.timeout(timeout):
            while not (result := await check()):
                await asyncio.sleep(0.05)
        return result
    finally:
        stop.set()
        await task


@pytest.fixture
async def consumer(js: JetStreamContext) -> CommandConsumer:
    await _fresh_context(js)
    store = JetStreamEventStore(js, subjects.event_stream("canvas"))
    bus = CommandBus("canvas", store, HANDLERS, SystemClock(), UUID7())
    return CommandConsumer(js, bus, default_registry())


async def test_accepted_rejected_and_duplicate_commands(
    js: JetStreamContext, consumer: CommandConsumer
) -> None:
    store = consumer.bus.store
    create = CreateBoard(command_id="cmd-1", board_id="b1", name="Main", slug="main")
    await _send(js, create)
    await _send(js, create)  # a client retry: Nats-Msg-Id makes it a no-op on the stream
    clash = CreateBoard(command_id="cmd-2", board_id="b1", name="Other", slug="other")
    await _send(js, clash)

    async def done() -> bool:
        rejected = await store.load(subjects.rejection_subject("canvas", "cmd-2"))
        return bool(rejected)

    await _run_until(consumer, done)
    board = await store.load(subjects.event_subject("canvas", "board", "b1"))
    assert len(board) == 1 and board[0].causation_id == "cmd-1"
    # One request, one trace: the event continues the command's trace id.
    assert board[0].trace.traceparent is not None
    assert board[0].trace.traceparent.split("-")[1] == TRACE.traceparent.split("-")[1]  # type: ignore[union-attr]
    [rejection] = await store.load(subjects.rejection_subject("canvas", "cmd-2"))
    assert isinstance(rejection.event, CommandRejected)
    assert rejection.event.code == "board.exists"
    info = await js.stream_info(subjects.command_stream("canvas"))
    assert info.state.messages == 0, "every command was settled (work queue is empty)"


async def test_undecodable_command_is_dead_lettered_and_rejected(
    js: JetStreamContext, consumer: CommandConsumer
) -> None:
    headers = {
        codec.H_TYPE: "canvas.CreateBoard",
        codec.H_VERSION: "1",
        codec.H_MSG_ID: "cmd-bad",
        codec.H_OCCURRED_AT: datetime.now(UTC).isoformat(),
    }
    await js.publish(
        subjects.command_subject("canvas", "CreateBoard"),
        b'{"type":"canvas.CreateBoard","board_id":7}',
        headers=headers,
    )
    store = consumer.bus.store

    async def rejected() -> list:  # type: ignore[type-arg]
        return await store.load(subjects.rejection_subject("canvas", "cmd-bad"))

    [rejection] = await _run_until(consumer, rejected)
    assert rejection.event.code == "events.decoding"
    dlq = await js.get_last_msg(
        subjects.dead_letter_stream("canvas"), subjects.dead_letter_subject("canvas", "CreateBoard")
    )
    assert dlq.data == b'{"type":"canvas.CreateBoard","board_id":7}'
    assert dlq.headers and dlq.headers["Orrery-Dead-Letter-Reason"] == "events.decoding"


def test_error_table() -> None:
    assert disposition_of(Rejection("x", "y")) is Disposition.ACK
    assert disposition_of(DecodingError("bad")) is Disposition.TERM
    assert disposition_of(ConcurrencyConflict("s", 1, 2)) is Disposition.NAK
    assert disposition_of(InfrastructureError("down")) is Disposition.NAK
    assert disposition_of(ValueError("bug")) is Disposition.NAK
