"""``canvas.boards``: one row per board (version 1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from orrery.events import Envelope, Event, subjects
from orrery.events.canvas import BoardCreated, BoardRenamed


@dataclass(frozen=True)
class BoardsProjection:
    name: str = "boards"
    version: int = 1
    schema: str = "canvas"
    stream: str = subjects.event_stream("canvas")
    subjects: Sequence[str] = (subjects.event_subjects("canvas", "board"),)
    tables: Sequence[str] = ("boards",)

    def ddl(self, schema: str) -> Sequence[str]:
        return [
            f"""CREATE TABLE "{schema}".boards (
                board_id text PRIMARY KEY,
                name text NOT NULL,
                slug text NOT NULL,
                created_by text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                last_seq bigint NOT NULL
            )""",
            f'CREATE INDEX ON "{schema}".boards (slug)',
        ]

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        # Fold the batch in memory first, so a batch costs two statements, not one per event.
        created: dict[str, list[object]] = {}
        renamed: dict[str, tuple[str, datetime, int]] = {}
        for env in events:
            event = env.event
            if type(event) is BoardCreated:  # exact types: the hot loop of every rebuild
                created[event.board_id] = [
                    event.board_id, event.name, event.slug, env.actor,
                    env.occurred_at, env.occurred_at, env.sequence,
                ]  # fmt: skip
            elif type(event) is BoardRenamed:
                row = created.get(event.board_id)
                if row is not None:
                    row[1], row[5], row[6] = event.name, env.occurred_at, env.sequence
                else:
                    renamed[event.board_id] = (event.name, env.occurred_at, env.sequence)
        if created:
            await conn.executemany(
                f'INSERT INTO "{schema}".boards VALUES ($1, $2, $3, $4, $5, $6, $7)'
                " ON CONFLICT (board_id) DO NOTHING",
                list(created.values()),
            )
        if renamed:
            await conn.executemany(
                f'UPDATE "{schema}".boards SET name = $2, updated_at = $3, last_seq = $4'
                " WHERE board_id = $1",
                [(bid, *row) for bid, row in renamed.items()],
            )
