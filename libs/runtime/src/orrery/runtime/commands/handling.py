"""Load, decide, append, with a bounded retry on conflict.

Domain code supplies pure pieces: ``evolve`` folds events into state, ``decide`` turns a command
and the state into events or raises ``Rejection``. This module does the I/O around them.

Redelivery safety: a command may be delivered again after some or all of its events were
appended (the service died before the ack). The events it already caused are found by their
causation id; the decision is taken again on the history *without* them, and only the events not
yet stored are appended. That holds beyond JetStream's dedup window, which only covers racing
duplicates.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import msgspec
from orrery.events import Command, EventMeta, subjects, wire_tag
from orrery.events.common import CommandRejected
from orrery.events.errors import Rejection
from orrery.runtime import tracing
from orrery.runtime.clock import Clock, IdGen
from orrery.runtime.decider import Deps, Handler, HandlerTable
from orrery.runtime.errors import ConcurrencyConflict
from orrery.runtime.eventstore.base import EventStore


class Outcome(Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ALREADY_DONE = "already_done"


@dataclass
class CommandBus:
    """Executes commands of one context against its event store."""

    context: str
    store: EventStore
    handlers: HandlerTable
    clock: Clock
    ids: IdGen
    max_attempts: int = 5
    _rng: random.Random = field(default_factory=random.Random)

    async def execute(self, command: Command, meta: EventMeta) -> Outcome:
        handler = self.handlers.get(type(command))
        if handler is None:
            raise Rejection("command.unsupported", f"{wire_tag(type(command))} has no handler")
        subject = subjects.event_subject(
            self.context, handler.aggregate.kind, handler.aggregate_id(command)
        )
        for attempt in range(self.max_attempts):
            try:
                return await self._attempt(handler, command, meta, subject)
            except ConcurrencyConflict:
                if attempt == self.max_attempts - 1:
                    raise
                # Jitter spreads racing writers so they don't collide again in lockstep.
                await asyncio.sleep(self._rng.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")

    async def _attempt(
        self, handler: Handler[Any, Any], command: Command, meta: EventMeta, subject: str
    ) -> Outcome:
        history = await self.store.load(subject)
        mine = [e for e in history if e.causation_id == command.command_id]
        prior = [e for e in history if e.causation_id != command.command_id]
        state = handler.aggregate.fold(prior)
        deps = Deps(clock=self.clock, ids=self.ids, actor=meta.actor)
        events = handler.decide(command, state, deps)
        if mine and len(mine) >= len(events):
            return Outcome.ALREADY_DONE
        seq = history[-1].sequence if history else 0
        for index, event in enumerate(events[len(mine) :], start=len(mine)):
            result = await self.store.append(
                subject,
                event,
                expected_seq=seq,
                msg_id=f"{command.command_id}:{index}",
                meta=self.event_meta(command, meta),
            )
            seq = result.sequence
        return Outcome.ACCEPTED

    def event_meta(self, command: Command, meta: EventMeta) -> EventMeta:
        here = tracing.current()  # the handler's span, when a tracer is configured
        return EventMeta(
            occurred_at=self.clock.now(),
            actor=meta.actor,
            correlation_id=meta.correlation_id or command.command_id,
            causation_id=command.command_id,
            trace=here if here.traceparent else meta.trace,
        )

    async def reject(
        self,
        command_id: str,
        command_type: str,
        error: Rejection | Exception,
        meta: EventMeta | None,
    ) -> None:
        """Append the typed rejection that a client waiting on ``command_id`` will see."""
        code = getattr(error, "code", "command.failed")
        detail = getattr(error, "detail", {})
        rejected = CommandRejected(
            command_id=command_id,
            command_type=command_type,
            code=str(code),
            message=getattr(error, "message", str(error)),
            detail=msgspec.to_builtins(detail) if detail else {},
        )
        base = meta or EventMeta(occurred_at=self.clock.now())
        await self.store.append(
            subjects.rejection_subject(self.context, command_id),
            rejected,
            expected_seq=None,
            msg_id=f"{command_id}:rejected",
            meta=EventMeta(
                occurred_at=self.clock.now(),
                actor=base.actor,
                correlation_id=base.correlation_id or command_id,
                causation_id=command_id,
                trace=base.trace,
            ),
        )
