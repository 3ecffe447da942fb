"""``canvas.boards`` and everything on a board (version 2): ``boards``, ``zones``, ``notes``,
``cards``, ``comments``, ``reactions`` and ``triggers``. The gateway's canvas read model queries
these columns; JSON columns are text (msgspec's encoding of the event's value).

- ``boards.last_seq``/``updated_at``: the newest event of the board, whatever it changed (a zone,
  a card, a comment...), so ``last_seq`` is the sequence a board snapshot is consistent with.
- ``zones.z``: order of addition (0, 1, ...; the higher is on top); an update keeps it.
- ``cards.x``/``y``: as in the events, relative to the zone's top-left when ``zone_id`` is set.
- ``comments``: a reply carries its thread's anchor; moving or deleting a thread's first comment
  moves or deletes its replies. Deleted comments (and deleted boards) stay as rows, flagged.
- ``triggers``: one row per zone trigger, ``status`` requested, offered, fired, failed or
  dismissed.

A batch is applied in log order. A run of ``BoardCreated``/``BoardRenamed`` events (the bulk of
a log of boards, and all that ``bench/events.py`` replays) is folded in memory and written with
one statement per kind; every other event is one statement, consecutive events with the same
statement are sent as one ``executemany``, and the boards' ``last_seq`` moves once at the end.
Inserts ignore rows that exist, so a replay into fresh tables and the runner's batches give the
same rows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec
from orrery.events import Envelope, Event, subjects
from orrery.events import canvas as c

_json = msgspec.json.Encoder()


def _j(value: object) -> str:
    return _json.encode(value).decode()


def _context(value: dict[str, object]) -> str:
    return _j(value) if value else "{}"


@dataclass(frozen=True)
class _Sql:
    """The statements of one schema (built once per schema: same strings, so consecutive events
    with the same statement are recognised by identity)."""

    create: str
    rename: str
    touch: str
    board_updated: str
    board_deleted: str
    zone_added: str
    zone_updated: str
    zone_deleted: str
    note_upsert: str
    note_deleted: str
    card_moved: str
    card_unpinned: str
    card_removed: str
    trigger_requested: str
    trigger_offered: str
    trigger_fired: str
    trigger_failed: str
    trigger_dismissed: str
    comment_added: str
    comment_edited: str
    comment_moved: str
    comment_resolved: str
    comment_deleted: str
    reaction_on: str
    reaction_off: str


@functools.lru_cache(maxsize=64)
def _sql(schema: str) -> _Sql:
    q = f'"{schema}"'
    return _Sql(
        create=f"INSERT INTO {q}.boards (board_id, name, slug, icon, color, background_color,"
        " description, context, created_by, created_at, updated_at, last_seq)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (board_id) DO NOTHING",
        rename=f"UPDATE {q}.boards SET name = $2, updated_at = $3, last_seq = $4"
        " WHERE board_id = $1",
        touch=f"UPDATE {q}.boards SET updated_at = $3, last_seq = $2"
        " WHERE board_id = $1 AND last_seq < $2",
        board_updated=f"UPDATE {q}.boards SET name = $2, icon = $3, color = $4,"
        " background_color = $5, description = $6, context = $7 WHERE board_id = $1",
        board_deleted=f"UPDATE {q}.boards SET deleted = true WHERE board_id = $1",
        zone_added=f"INSERT INTO {q}.zones (board_id, zone_id, label, x, y, width, height,"
        " border_color, background_color, locked, trigger, z, last_seq)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
        f" (SELECT COALESCE(max(z) + 1, 0) FROM {q}.zones WHERE board_id = $1), $12)"
        " ON CONFLICT (board_id, zone_id) DO NOTHING",
        zone_updated=f"UPDATE {q}.zones SET label = $3, x = $4, y = $5, width = $6, height = $7,"
        " border_color = $8, background_color = $9, locked = $10, trigger = $11, last_seq = $12"
        " WHERE board_id = $1 AND zone_id = $2",
        zone_deleted=f"DELETE FROM {q}.zones WHERE board_id = $1 AND zone_id = $2",
        note_upsert=f"INSERT INTO {q}.notes (board_id, note_id, kind, x, y, width, height,"
        " content, font_size, color, background_color, last_seq)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (board_id, note_id) DO UPDATE SET kind = EXCLUDED.kind, x = EXCLUDED.x,"
        " y = EXCLUDED.y, width = EXCLUDED.width, height = EXCLUDED.height,"
        " content = EXCLUDED.content, font_size = EXCLUDED.font_size, color = EXCLUDED.color,"
        " background_color = EXCLUDED.background_color, last_seq = EXCLUDED.last_seq",
        note_deleted=f"DELETE FROM {q}.notes WHERE board_id = $1 AND note_id = $2",
        card_moved=f"INSERT INTO {q}.cards (board_id, worktree_id, x, y, width, height, zone_id,"
        " placed_by, placed_at, updated_at, last_seq)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)"
        " ON CONFLICT (board_id, worktree_id) DO UPDATE SET x = EXCLUDED.x, y = EXCLUDED.y,"
        " width = EXCLUDED.width, height = EXCLUDED.height, zone_id = EXCLUDED.zone_id,"
        " updated_at = EXCLUDED.updated_at, last_seq = EXCLUDED.last_seq",
        card_unpinned=f"UPDATE {q}.cards SET x = $3, y = $4, zone_id = NULL, updated_at = $5,"
        " last_seq = $6 WHERE board_id = $1 AND worktree_id = $2",
        card_removed=f"DELETE FROM {q}.cards WHERE board_id = $1 AND worktree_id = $2",
        trigger_requested=f"INSERT INTO {q}.triggers (board_id, trigger_id, zone_id,"
        " worktree_id, status, requested_by, created_at, updated_at, last_seq)"
        " VALUES ($1, $2, $3, $4, 'requested', $5, $6, $6, $7)"
        " ON CONFLICT (board_id, trigger_id) DO NOTHING",
        trigger_offered=f"UPDATE {q}.triggers SET status = 'offered', prompt = $3,"
        " settings = $4, offered_to = $5, updated_at = $6, last_seq = $7"
        " WHERE board_id = $1 AND trigger_id = $2",
        trigger_fired=f"UPDATE {q}.triggers SET status = 'fired', action = $3, prompt = $4,"
        " settings = $5, session_id = $6, updated_at = $7, last_seq = $8"
        " WHERE board_id = $1 AND trigger_id = $2",
        trigger_failed=f"UPDATE {q}.triggers SET status = 'failed', code = $3, message = $4,"
        " updated_at = $5, last_seq = $6 WHERE board_id = $1 AND trigger_id = $2",
        trigger_dismissed=f"UPDATE {q}.triggers SET status = 'dismissed', updated_at = $3,"
        " last_seq = $4 WHERE board_id = $1 AND trigger_id = $2",
        # A reply takes its thread's anchor (as the Board aggregate does).
        comment_added=f"INSERT INTO {q}.comments (board_id, comment_id, parent_id, author,"
        " content, anchor, mentions, created_at, updated_at, last_seq)"
        " VALUES ($1, $2, $3, $4, $5,"
        f" COALESCE((SELECT p.anchor FROM {q}.comments p"
        " WHERE p.board_id = $1 AND p.comment_id = $3), $6), $7, $8, $8, $9)"
        " ON CONFLICT (board_id, comment_id) DO NOTHING",
        comment_edited=f"UPDATE {q}.comments SET content = $3, mentions = $4, edited = true,"
        " updated_at = $5, last_seq = $6 WHERE board_id = $1 AND comment_id = $2",
        comment_moved=f"UPDATE {q}.comments SET anchor = $3, updated_at = $4, last_seq = $5"
        " WHERE board_id = $1 AND (comment_id = $2 OR parent_id = $2)",
        comment_resolved=f"UPDATE {q}.comments SET resolved = $3, updated_at = $4,"
        " last_seq = $5 WHERE board_id = $1 AND comment_id = $2",
        comment_deleted=f"UPDATE {q}.comments SET deleted = true, updated_at = $3,"
        " last_seq = $4 WHERE board_id = $1 AND (comment_id = $2 OR parent_id = $2)",
        reaction_on=f"INSERT INTO {q}.reactions (board_id, comment_id, user_id, emoji)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        reaction_off=f"DELETE FROM {q}.reactions WHERE board_id = $1 AND comment_id = $2"
        " AND user_id = $3 AND emoji = $4",
    )


Row = Sequence[object]


class _Ops:
    """Statements in log order; consecutive ones with the same SQL become one executemany."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple[str, list[Row]]] = []

    def add(self, sql: str, *args: object) -> None:
        if self.ops and self.ops[-1][0] is sql:
            self.ops[-1][1].append(args)
        else:
            self.ops.append((sql, [args]))

    def extend(self, sql: str, rows: Iterable[Row]) -> None:
        batch = list(rows)
        if batch:
            self.ops.append((sql, batch))

    async def run(self, conn: asyncpg.Connection) -> None:
        for sql, rows in self.ops:
            if len(rows) == 1:
                await conn.execute(sql, *rows[0])
            else:
                await conn.executemany(sql, rows)


@dataclass(frozen=True)
class BoardsProjection:
    name: str = "boards"
    version: int = 2  # 2: the board's fields, zones, notes, cards, comments, reactions, triggers
    schema: str = "canvas"
    stream: str = subjects.event_stream("canvas")
    subjects: Sequence[str] = (subjects.event_subjects("canvas", "board"),)
    tables: Sequence[str] = (
        "boards",
        "zones",
        "notes",
        "cards",
        "comments",
        "reactions",
        "triggers",
    )

    def ddl(self, schema: str) -> Sequence[str]:
        q = f'"{schema}"'
        return [
            f"""CREATE TABLE {q}.boards (
                board_id text PRIMARY KEY,
                name text NOT NULL,
                slug text NOT NULL,
                icon text NOT NULL DEFAULT '',
                color text,
                background_color text,
                description text NOT NULL DEFAULT '',
                context text NOT NULL DEFAULT '{{}}',
                deleted boolean NOT NULL DEFAULT false,
                created_by text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                last_seq bigint NOT NULL
            )""",
            f"CREATE INDEX ON {q}.boards (slug)",
            f"""CREATE TABLE {q}.zones (
                board_id text NOT NULL,
                zone_id text NOT NULL,
                label text NOT NULL,
                x double precision NOT NULL,
                y double precision NOT NULL,
                width double precision NOT NULL,
                height double precision NOT NULL,
                border_color text NOT NULL,
                background_color text NOT NULL,
                locked boolean NOT NULL DEFAULT false,
                trigger text,
                z integer NOT NULL,
                last_seq bigint NOT NULL,
                PRIMARY KEY (board_id, zone_id)
            )""",
            f"""CREATE TABLE {q}.notes (
                board_id text NOT NULL,
                note_id text NOT NULL,
                kind text NOT NULL,
                x double precision NOT NULL,
                y double precision NOT NULL,
                width double precision NOT NULL,
                height double precision,
                content text NOT NULL DEFAULT '',
                font_size integer NOT NULL,
                color text,
                background_color text,
                last_seq bigint NOT NULL,
                PRIMARY KEY (board_id, note_id)
            )""",
            f"""CREATE TABLE {q}.cards (
                board_id text NOT NULL,
                worktree_id text NOT NULL,
                x double precision NOT NULL,
                y double precision NOT NULL,
                width double precision NOT NULL,
                height double precision NOT NULL,
                zone_id text,
                placed_by text NOT NULL,
                placed_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                last_seq bigint NOT NULL,
                PRIMARY KEY (board_id, worktree_id)
            )""",
            f"CREATE INDEX ON {q}.cards (worktree_id)",
            f"""CREATE TABLE {q}.comments (
                board_id text NOT NULL,
                comment_id text NOT NULL,
                parent_id text,
                author text NOT NULL,
                content text NOT NULL,
                anchor text NOT NULL,
                mentions text NOT NULL DEFAULT '[]',
                resolved boolean NOT NULL DEFAULT false,
                edited boolean NOT NULL DEFAULT false,
                deleted boolean NOT NULL DEFAULT false,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                last_seq bigint NOT NULL,
                PRIMARY KEY (board_id, comment_id)
            )""",
            f"CREATE INDEX ON {q}.comments (board_id, parent_id)",
            f"""CREATE TABLE {q}.reactions (
                board_id text NOT NULL,
                comment_id text NOT NULL,
                user_id text NOT NULL,
                emoji text NOT NULL,
                PRIMARY KEY (board_id, comment_id, user_id, emoji)
            )""",
            f"""CREATE TABLE {q}.triggers (
                board_id text NOT NULL,
                trigger_id text NOT NULL,
                zone_id text NOT NULL,
                worktree_id text NOT NULL,
                status text NOT NULL,
                action text,
                prompt text,
                settings text,
                session_id text,
                offered_to text,
                code text,
                message text,
                requested_by text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                last_seq bigint NOT NULL,
                PRIMARY KEY (board_id, trigger_id)
            )""",
            f"CREATE INDEX ON {q}.triggers (board_id, status)",
        ]

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        sql = _sql(schema)
        ops = _Ops()
        # The fold of the current run of creates and renames: two statements per run.
        created: dict[str, list[object]] = {}
        renamed: dict[str, tuple[str, datetime, int]] = {}
        # Every other event moves its board's last_seq/updated_at, written once at the end.
        touched: dict[str, tuple[int, datetime]] = {}
        for env in events:
            event = env.event
            if type(event) is c.BoardCreated:  # exact types: the hot loop of every rebuild
                created[event.board_id] = [
                    event.board_id, event.name, event.slug, event.icon, event.color,
                    event.background_color, event.description, _context(event.context),
                    env.actor, env.occurred_at, env.occurred_at, env.sequence,
                ]  # fmt: skip
            elif type(event) is c.BoardRenamed:
                row = created.get(event.board_id)
                if row is not None:
                    row[1], row[10], row[11] = event.name, env.occurred_at, env.sequence
                else:
                    renamed[event.board_id] = (event.name, env.occurred_at, env.sequence)
            else:
                if created or renamed:
                    _flush(ops, sql, created, renamed)
                board_id = getattr(event, "board_id", None)
                if isinstance(board_id, str):
                    _statements(ops, sql, env, event)
                    touched[board_id] = (env.sequence, env.occurred_at)
        _flush(ops, sql, created, renamed)
        ops.extend(sql.touch, [(bid, seq, at) for bid, (seq, at) in touched.items()])
        await ops.run(conn)


def _flush(
    ops: _Ops,
    sql: _Sql,
    created: dict[str, list[object]],
    renamed: dict[str, tuple[str, datetime, int]],
) -> None:
    ops.extend(sql.create, created.values())
    ops.extend(sql.rename, [(bid, *row) for bid, row in renamed.items()])
    created.clear()
    renamed.clear()


def _statements(  # noqa: PLR0912 - one branch per event type
    ops: _Ops, sql: _Sql, env: Envelope[Event], event: Event
) -> None:
    """The statements of one event other than BoardCreated and BoardRenamed."""
    at, seq = env.occurred_at, env.sequence
    match event:
        case c.BoardUpdated():
            ops.add(
                sql.board_updated,
                event.board_id, event.name, event.icon, event.color, event.background_color,
                event.description, _context(event.context),
            )  # fmt: skip
        case c.BoardDeleted():
            ops.add(sql.board_deleted, event.board_id)
        case c.ZoneAdded(zone=z):
            ops.add(
                sql.zone_added,
                event.board_id, z.zone_id, z.label, z.x, z.y, z.width, z.height, z.border_color,
                z.background_color, z.locked, None if z.trigger is None else _j(z.trigger), seq,
            )  # fmt: skip
        case c.ZoneUpdated(zone=z):
            ops.add(
                sql.zone_updated,
                event.board_id, z.zone_id, z.label, z.x, z.y, z.width, z.height, z.border_color,
                z.background_color, z.locked, None if z.trigger is None else _j(z.trigger), seq,
            )  # fmt: skip
        case c.ZoneDeleted():
            ops.add(sql.zone_deleted, event.board_id, event.zone_id)
        case c.NoteAdded(note=n) | c.NoteUpdated(note=n):
            ops.add(
                sql.note_upsert,
                event.board_id, n.note_id, n.kind, n.x, n.y, n.width, n.height, n.content,
                n.font_size, n.color, n.background_color, seq,
            )  # fmt: skip
        case c.NoteDeleted():
            ops.add(sql.note_deleted, event.board_id, event.note_id)
        case c.CardMoved():
            ops.add(
                sql.card_moved,
                event.board_id, event.worktree_id, event.x, event.y, event.width, event.height,
                event.zone_id, env.actor, at, seq,
            )  # fmt: skip
        case c.CardUnpinned():
            ops.add(sql.card_unpinned, event.board_id, event.worktree_id, event.x, event.y, at, seq)
        case c.CardRemoved():
            ops.add(sql.card_removed, event.board_id, event.worktree_id)
        case c.ZoneTriggerRequested():
            ops.add(
                sql.trigger_requested,
                event.board_id, event.trigger_id, event.zone_id, event.worktree_id, env.actor,
                at, seq,
            )  # fmt: skip
        case c.ZoneTriggerOffered():
            ops.add(
                sql.trigger_offered,
                event.board_id, event.trigger_id, event.prompt, _j(event.settings),
                event.offered_to, at, seq,
            )  # fmt: skip
        case c.ZoneTriggerFired():
            ops.add(
                sql.trigger_fired,
                event.board_id, event.trigger_id, event.action, event.prompt,
                _j(event.settings), event.session_id, at, seq,
            )  # fmt: skip
        case c.ZoneTriggerFailed():
            ops.add(
                sql.trigger_failed,
                event.board_id, event.trigger_id, event.code, event.message, at, seq,
            )  # fmt: skip
        case c.ZoneTriggerDismissed():
            ops.add(sql.trigger_dismissed, event.board_id, event.trigger_id, at, seq)
        case c.CommentAdded():
            ops.add(
                sql.comment_added,
                event.board_id, event.comment_id, event.parent_id, event.author, event.content,
                _j(event.anchor), _j(event.mentions), at, seq,
            )  # fmt: skip
        case c.CommentEdited():
            ops.add(
                sql.comment_edited,
                event.board_id, event.comment_id, event.content, _j(event.mentions), at, seq,
            )  # fmt: skip
        case c.CommentMoved():
            ops.add(sql.comment_moved, event.board_id, event.comment_id, _j(event.anchor), at, seq)
        case c.CommentResolved() | c.CommentReopened():
            resolved = type(event) is c.CommentResolved
            ops.add(sql.comment_resolved, event.board_id, event.comment_id, resolved, at, seq)
        case c.CommentDeleted():
            ops.add(sql.comment_deleted, event.board_id, event.comment_id, at, seq)
        case c.ReactionToggled():
            ops.add(
                sql.reaction_on if event.on else sql.reaction_off,
                event.board_id, event.comment_id, event.user, event.emoji,
            )  # fmt: skip
