"""In-memory event store for unit tests. It passes the same contract suite as JetStream."""

from __future__ import annotations

from orrery.events import Envelope, Event, EventMeta, wire_tag
from orrery.runtime.errors import ConcurrencyConflict
from orrery.runtime.eventstore.base import AppendResult


class InMemoryEventStore:
    def __init__(self, stream: str = "MEMORY") -> None:
        self.stream = stream
        self._log: list[Envelope[Event]] = []
        self._by_subject: dict[str, list[Envelope[Event]]] = {}
        self._msg_ids: dict[str, int] = {}

    async def append(
        self,
        subject: str,
        event: Event,
        *,
        expected_seq: int | None,
        msg_id: str,
        meta: EventMeta,
    ) -> AppendResult:
        last = await self.last_sequence(subject)
        landed = self._msg_ids.get(msg_id)
        # Same order of checks as JetStream: a stale expected sequence is a conflict, unless
        # the duplicate is the subject's last event (see JetStreamEventStore._landed).
        if landed is not None and (expected_seq in (None, last) or landed == last):
            return AppendResult(landed, duplicate=True)
        if expected_seq is not None and expected_seq != last:
            raise ConcurrencyConflict(subject, expected_seq, last)
        envelope = Envelope(
            event=event,
            event_id=msg_id,
            type=wire_tag(type(event)),
            version=type(event).VERSION,
            stream=self.stream,
            subject=subject,
            sequence=len(self._log) + 1,
            occurred_at=meta.occurred_at,
            actor=meta.actor,
            correlation_id=meta.correlation_id,
            causation_id=meta.causation_id,
            trace=meta.trace,
        )
        self._log.append(envelope)
        self._by_subject.setdefault(subject, []).append(envelope)
        self._msg_ids[msg_id] = envelope.sequence
        return AppendResult(envelope.sequence)

    async def load(self, subject: str, *, after: int = 0) -> list[Envelope[Event]]:
        return [e for e in self._by_subject.get(subject, ()) if e.sequence > after]

    async def last_sequence(self, subject: str) -> int:
        events = self._by_subject.get(subject)
        return events[-1].sequence if events else 0

    def all(self) -> list[Envelope[Event]]:
        return list(self._log)
