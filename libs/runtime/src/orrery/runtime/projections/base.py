"""What a projection declares. Its tables live in its service's schema; a rebuild builds the
same tables in a scratch schema, replays the log into them and switches them in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import asyncpg
from orrery.events import Envelope, Event


class Projection(Protocol):
    @property
    def name(self) -> str:
        """Unique within the schema, a subject token (``boards``)."""
        ...

    @property
    def version(self) -> int:
        """Bump when the rows it writes change meaning: the runner rebuilds it at start."""
        ...

    @property
    def schema(self) -> str:
        """The owning service's Postgres schema (``canvas``)."""
        ...

    @property
    def stream(self) -> str: ...

    @property
    def subjects(self) -> Sequence[str]:
        """JetStream filter subjects the projection reads."""
        ...

    @property
    def tables(self) -> Sequence[str]:
        """Every table it owns, unqualified."""
        ...

    def ddl(self, schema: str) -> Sequence[str]:
        """CREATE statements for its tables inside ``schema``."""
        ...

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        """Write the effect of ``events`` (in log order) to the tables in ``schema``. Runs inside
        the transaction that also advances the checkpoint."""
        ...
