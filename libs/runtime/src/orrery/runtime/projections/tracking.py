"""A projection with no tables: it only advances its checkpoint over a stream.

Services whose read models have not arrived yet run one, so their consumer, checkpoint and
heartbeat plumbing is exercised from the first day; ``orrery projections status`` shows its lag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from orrery.events import Envelope, Event, subjects


@dataclass(frozen=True)
class TrackingProjection:
    name: str
    schema: str
    stream: str
    subjects: Sequence[str]
    version: int = 1
    tables: Sequence[str] = ()

    @classmethod
    def log_of(cls, ctx: str) -> TrackingProjection:
        """``<ctx>.log``: the checkpoint over a whole context's event stream."""
        return cls(
            name="log",
            schema=ctx,
            stream=subjects.event_stream(ctx),
            subjects=(subjects.event_subjects(ctx),),
        )

    def ddl(self, schema: str) -> Sequence[str]:
        return ()

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        """Nothing to write: the checkpoint is the whole state."""
