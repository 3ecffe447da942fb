"""Load, decide, append, with a bounded retry on conflict.

Domain code supplies pure pieces: ``evolve`` folds events into state, ``decide`` turns a command
and the state into events or raises ``Rejection``. This module does the I/O around them.

Redelivery safety: a command may be delivered again after some or all of its events were
appended (the service died before the ack). The events it already caused are found by their
causation id; the decision is taken again on the history *without* them, and only the events not
yet stored are appended. That holds beyond JetStream's dedup window, which only covers racing
duplicates.

Folded states are cached per subject (states are immutable), so a command on a long-lived
aggregate loads only the events appended since the last one; a command whose own events are
already in the cache takes the full path above.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar, cast

import msgspec
from orrery.events import Command, Event, EventMeta, subjects, wire_tag
from orrery.events.common import CommandRejected
from orrery.events.errors import Rejection
from orrery.runtime import tracing
from orrery.runtime.clock import Clock, IdGen
from orrery.runtime.decider import Aggregate, Deps, Handler, HandlerTable
from orrery.runtime.errors import ConcurrencyConflict
from orrery.runtime.eventstore.base import EventStore

CACHE_SUBJECTS = 4096
S = TypeVar("S")


@dataclass(frozen=True)
class _Folded:
    sequence: int
    state: Any
    causes: frozenset[str | None]


class Outcome(Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ALREADY_DONE = "already_done"


@dataclass(frozen=True)
class Executed:
    outcome: Outcome
    appended: int
    last_sequence: int


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
    _cache: dict[str, _Folded] = field(default_factory=dict)

    async def execute(self, command: Command, meta: EventMeta) -> Outcome:
        return (await self.run(command, meta)).outcome

    async def run(self, command: Command, meta: EventMeta) -> Executed:
        """Execute ``command``; say what was appended (``last_sequence``: the stream sequence of
        the last event, for read-your-writes)."""
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
    ) -> Executed:
        cached = self._cache.get(subject)
        if cached is not None and command.command_id not in cached.causes:
            done = await self._optimistic(handler, command, meta, subject, cached)
            if done is not None:
                return done
            cached = self._cache.get(subject)
        if cached is not None and command.command_id not in cached.causes:
            newer = await self.store.load(subject, after=cached.sequence)
            if all(e.causation_id != command.command_id for e in newer):
                state = cached.state
                for envelope in newer:
                    state = handler.aggregate.evolve(state, envelope.event)
                seq = newer[-1].sequence if newer else cached.sequence
                causes = cached.causes | {e.causation_id for e in newer}
                return await self._decide_and_append(
                    handler, command, meta, subject, _Folded(seq, state, causes), mine=0
                )
        history = await self.store.load(subject)
        mine = [e for e in history if e.causation_id == command.command_id]
        prior = [e for e in history if e.causation_id != command.command_id]
        folded = _Folded(
            history[-1].sequence if history else 0,
            handler.aggregate.fold(prior),
            frozenset(e.causation_id for e in prior),
        )
        return await self._decide_and_append(
            handler, command, meta, subject, folded, mine=len(mine)
        )

    async def _optimistic(
        self,
        handler: Handler[Any, Any],
        command: Command,
        meta: EventMeta,
        subject: str,
        cached: _Folded,
    ) -> Executed | None:
        """Decide on the cached state without reading the log first. Appends check it with
        the expected sequence; a rejection or a no-op is final only once the subject is known not
        to have moved. ``None``: the cache was behind, take the reading path."""
        deps = Deps(clock=self.clock, ids=self.ids, actor=meta.actor)
        try:
            events = handler.decide(command, cached.state, deps)
        except Rejection:
            if await self.store.last_sequence(subject) == cached.sequence:
                raise
            return None
        if not events:
            if await self.store.last_sequence(subject) == cached.sequence:
                return Executed(Outcome.ACCEPTED, 0, cached.sequence)
            return None
        try:
            return await self._append(handler, command, meta, subject, cached, events, mine=0)
        except ConcurrencyConflict:
            self._cache.pop(subject, None)
            return None

    async def _decide_and_append(
        self,
        handler: Handler[Any, Any],
        command: Command,
        meta: EventMeta,
        subject: str,
        folded: _Folded,
        *,
        mine: int,
    ) -> Executed:
        deps = Deps(clock=self.clock, ids=self.ids, actor=meta.actor)
        events = handler.decide(command, folded.state, deps)
        if mine and mine >= len(events):
            return Executed(Outcome.ALREADY_DONE, 0, folded.sequence)
        return await self._append(handler, command, meta, subject, folded, events, mine=mine)

    async def _append(  # noqa: PLR0917 - the pieces of one attempt, passed along
        self,
        handler: Handler[Any, Any],
        command: Command,
        meta: EventMeta,
        subject: str,
        folded: _Folded,
        events: Sequence[Event],
        *,
        mine: int,
    ) -> Executed:
        seq = folded.sequence
        state = folded.state
        for index, event in enumerate(events[mine:], start=mine):
            result = await self.store.append(
                subject,
                event,
                expected_seq=seq,
                msg_id=f"{command.command_id}:{index}",
                meta=self.event_meta(command, meta),
            )
            if result.duplicate:
                # Stored before, by an earlier delivery this cache never saw: read the log.
                self._cache.pop(subject, None)
                raise ConcurrencyConflict(subject, seq, result.sequence)
            seq = result.sequence
            state = handler.aggregate.evolve(state, event)
        if not mine:
            # Only a state folded over the whole subject in order may be cached.
            self._remember(subject, _Folded(seq, state, folded.causes | {command.command_id}))
        return Executed(Outcome.ACCEPTED, len(events) - mine, seq)

    def cached(self, aggregate: Aggregate[S], aggregate_id: str) -> S | None:
        """The last state this bus folded for the aggregate, without any I/O (may be behind)."""
        subject = subjects.event_subject(self.context, aggregate.kind, aggregate_id)
        folded = self._cache.get(subject)
        return None if folded is None else cast("S", folded.state)

    async def current(self, aggregate: Aggregate[S], aggregate_id: str) -> S:
        """The aggregate's state now, folded (incrementally, through the cache) from its log."""
        subject = subjects.event_subject(self.context, aggregate.kind, aggregate_id)
        cached = self._cache.get(subject)
        if cached is None:
            cached = _Folded(0, aggregate.initial(), frozenset())
        newer = await self.store.load(subject, after=cached.sequence)
        if not newer:
            return cast("S", cached.state)
        state = cached.state
        for envelope in newer:
            state = aggregate.evolve(state, envelope.event)
        causes = cached.causes | {e.causation_id for e in newer}
        self._remember(subject, _Folded(newer[-1].sequence, state, causes))
        return cast("S", state)

    def _remember(self, subject: str, folded: _Folded) -> None:
        self._cache.pop(subject, None)
        self._cache[subject] = folded
        if len(self._cache) > CACHE_SUBJECTS:
            del self._cache[next(iter(self._cache))]

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
