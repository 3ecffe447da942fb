"""The event store port. Two adapters pass one contract suite: JetStream and in-memory."""

from __future__ import annotations

from typing import Protocol

import msgspec
from orrery.events import Envelope, Event, EventMeta


class AppendResult(msgspec.Struct, frozen=True):
    sequence: int
    duplicate: bool = False


class EventStore(Protocol):
    """One stream's events, addressed by subject (one subject per aggregate).

    ``append`` checks ``expected_seq`` against the subject's last stream sequence (0: the subject
    must be empty; None: no check) and raises ``ConcurrencyConflict`` when stale. The same
    ``msg_id`` appended twice (within the dedup window) stores one event and returns its sequence
    with ``duplicate=True``, also when the retry carries the now stale ``expected_seq`` of the
    first attempt (as long as no other event was appended to the subject in between).
    """

    stream: str

    async def append(
        self,
        subject: str,
        event: Event,
        *,
        expected_seq: int | None,
        msg_id: str,
        meta: EventMeta,
    ) -> AppendResult: ...

    async def load(self, subject: str, *, after: int = 0) -> list[Envelope[Event]]:
        """Every event of ``subject`` in order (empty if none), or those after stream sequence
        ``after``."""
        ...

    async def last_sequence(self, subject: str) -> int:
        """The stream sequence of the subject's last event, 0 if it has none."""
        ...
