"""Queries on the canvas service's read model (schema ``canvas``, projection ``boards``: the
tables ``boards``, ``zones``, ``notes``, ``cards``, ``comments``, ``reactions`` and ``triggers``).
The gateway only reads these tables; every change goes through a command.

A board snapshot is read in one repeatable-read transaction, so every object in it is as of the
same point of the board's log: ``seq`` (the board's ``last_seq``), after which a WebSocket
resumes with no gap. Tables that do not exist yet (the canvas service has not started, or is
rebuilding an older version) read as empty.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from orrery.gateway.errors import ApiError
from orrery.gateway.readmodel import caught_up

SCHEMA = "canvas"
PROJECTION = "boards"
PENDING = ("requested", "offered")
_decode = msgspec.json.decode
# Tables not there yet, or an older version's (fewer columns): nothing to read yet.
_NOT_YET = (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError)


class BoardOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    slug: str
    icon: str
    color: str | None
    background_color: str | None
    description: str
    context: dict[str, Any]
    deleted: bool
    created_by: str
    created_at: datetime
    updated_at: datetime  # the board's newest event, whatever it changed
    last_seq: int


class ZoneOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    label: str
    x: float
    y: float
    width: float
    height: float
    border_color: str
    background_color: str
    locked: bool
    trigger: dict[str, Any] | None  # {template, behavior, settings}
    z: int  # order of addition: a higher one is on top


class NoteOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    x: float
    y: float
    width: float
    height: float | None
    content: str
    font_size: int
    color: str | None
    background_color: str | None


class CardOut(msgspec.Struct, frozen=True, kw_only=True):
    worktree_id: str
    x: float  # relative to the zone's top-left when zone_id is set
    y: float
    width: float
    height: float
    zone_id: str | None
    abs_x: float  # board coordinates
    abs_y: float
    placed_by: str
    updated_at: datetime


class ReactionOut(msgspec.Struct, frozen=True, kw_only=True):
    emoji: str
    users: list[str]


class CommentOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    parent_id: str | None
    author: str
    content: str
    anchor: dict[str, Any]  # {kind, target_id, x, y}; a reply's is its thread's
    mentions: list[str]
    resolved: bool
    edited: bool
    reactions: list[ReactionOut]
    created_at: datetime
    updated_at: datetime
    replies: list[CommentOut] = msgspec.field(default_factory=list)  # a thread's, oldest first


class TriggerOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    zone_id: str
    worktree_id: str
    status: str  # requested, offered, fired, failed, dismissed
    action: str | None
    prompt: str | None
    settings: dict[str, Any] | None
    session_id: str | None
    offered_to: str | None
    code: str | None
    message: str | None
    requested_by: str
    created_at: datetime


class BoardSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    board: BoardOut
    zones: list[ZoneOut]  # bottom to top
    notes: list[NoteOut]
    cards: list[CardOut]
    comments: list[CommentOut]  # threads (replies nested), oldest first; deleted ones left out
    triggers: list[TriggerOut]  # waiting ones only: requested or offered
    seq: int  # the board's log up to here is in this snapshot


# --- rows to structs ---------------------------------------------------------------------------

_BOARD_COLUMNS = (
    "board_id, name, slug, icon, color, background_color, description, context, deleted,"
    " created_by, created_at, updated_at, last_seq"
)
_ZONES = (
    "SELECT zone_id, label, x, y, width, height, border_color, background_color, locked, trigger,"
    f' z FROM "{SCHEMA}".zones WHERE board_id = $1'
)
_NOTES = (
    "SELECT note_id, kind, x, y, width, height, content, font_size, color, background_color"
    f' FROM "{SCHEMA}".notes WHERE board_id = $1'
)
_CARDS = (
    "SELECT c.worktree_id, c.x, c.y, c.width, c.height, c.zone_id, c.placed_by, c.updated_at,"
    " z.x AS zone_x, z.y AS zone_y"
    f' FROM "{SCHEMA}".cards c LEFT JOIN "{SCHEMA}".zones z'
    " ON z.board_id = c.board_id AND z.zone_id = c.zone_id WHERE c.board_id = $1"
)
_COMMENTS = (
    "SELECT comment_id, parent_id, author, content, anchor, mentions, resolved, edited,"
    f' created_at, updated_at FROM "{SCHEMA}".comments WHERE board_id = $1 AND NOT deleted'
)
_REACTIONS = (
    'SELECT comment_id, emoji, array_agg(user_id ORDER BY user_id COLLATE "C") AS users'
    f' FROM "{SCHEMA}".reactions WHERE board_id = $1'
)
# One reaction per emoji, in a stable order (code points: not the database's collation).
_BY_EMOJI = ' GROUP BY comment_id, emoji ORDER BY comment_id, emoji COLLATE "C"'
_TRIGGERS = (
    "SELECT trigger_id, zone_id, worktree_id, status, action, prompt, settings, session_id,"
    " offered_to, code, message, requested_by, created_at"
    f' FROM "{SCHEMA}".triggers WHERE board_id = $1'
)


def _json(value: str | None) -> Any:
    return None if value is None else _decode(value)


def board_out(row: asyncpg.Record) -> BoardOut:
    return BoardOut(
        id=row["board_id"],
        name=row["name"],
        slug=row["slug"],
        icon=row["icon"],
        color=row["color"],
        background_color=row["background_color"],
        description=row["description"],
        context=_decode(row["context"]),
        deleted=row["deleted"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_seq=row["last_seq"],
    )


def zone_out(row: asyncpg.Record) -> ZoneOut:
    return ZoneOut(
        id=row["zone_id"],
        label=row["label"],
        x=row["x"],
        y=row["y"],
        width=row["width"],
        height=row["height"],
        border_color=row["border_color"],
        background_color=row["background_color"],
        locked=row["locked"],
        trigger=_json(row["trigger"]),
        z=row["z"],
    )


def note_out(row: asyncpg.Record) -> NoteOut:
    return NoteOut(
        id=row["note_id"],
        kind=row["kind"],
        x=row["x"],
        y=row["y"],
        width=row["width"],
        height=row["height"],
        content=row["content"],
        font_size=row["font_size"],
        color=row["color"],
        background_color=row["background_color"],
    )


def card_out(row: asyncpg.Record) -> CardOut:
    pinned = row["zone_id"] is not None and row["zone_x"] is not None
    return CardOut(
        worktree_id=row["worktree_id"],
        x=row["x"],
        y=row["y"],
        width=row["width"],
        height=row["height"],
        zone_id=row["zone_id"],
        abs_x=row["zone_x"] + row["x"] if pinned else row["x"],
        abs_y=row["zone_y"] + row["y"] if pinned else row["y"],
        placed_by=row["placed_by"],
        updated_at=row["updated_at"],
    )


def trigger_out(row: asyncpg.Record) -> TriggerOut:
    return TriggerOut(
        id=row["trigger_id"],
        zone_id=row["zone_id"],
        worktree_id=row["worktree_id"],
        status=row["status"],
        action=row["action"],
        prompt=row["prompt"],
        settings=_json(row["settings"]),
        session_id=row["session_id"],
        offered_to=row["offered_to"],
        code=row["code"],
        message=row["message"],
        requested_by=row["requested_by"],
        created_at=row["created_at"],
    )


def comment_out(
    row: asyncpg.Record,
    reactions: dict[str, list[ReactionOut]],
    replies: list[CommentOut] | None = None,
) -> CommentOut:
    return CommentOut(
        id=row["comment_id"],
        parent_id=row["parent_id"],
        author=row["author"],
        content=row["content"],
        anchor=_decode(row["anchor"]),
        mentions=_decode(row["mentions"]),
        resolved=row["resolved"],
        edited=row["edited"],
        reactions=reactions.get(row["comment_id"], []),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        replies=replies or [],
    )


def grouped_reactions(rows: list[asyncpg.Record]) -> dict[str, list[ReactionOut]]:
    """comment id -> its reactions, one per emoji with the users who gave it."""
    found: dict[str, list[ReactionOut]] = defaultdict(list)
    for row in rows:
        found[row["comment_id"]].append(ReactionOut(emoji=row["emoji"], users=list(row["users"])))
    return found


def threads(
    rows: list[asyncpg.Record], reactions: dict[str, list[ReactionOut]]
) -> list[CommentOut]:
    """Rows (oldest first, deleted left out) as threads: each first comment with its replies."""
    replies: dict[str, list[CommentOut]] = defaultdict(list)
    for row in rows:
        if row["parent_id"] is not None:
            replies[row["parent_id"]].append(comment_out(row, reactions))
    return [
        comment_out(row, reactions, replies.get(row["comment_id"]))
        for row in rows
        if row["parent_id"] is None
    ]


# --- the read model ----------------------------------------------------------------------------


class CanvasReadModel:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        try:
            return list(await self._pool.fetch(sql, *args))
        except _NOT_YET:
            return []  # the canvas service has not created (this version of) its read model yet

    async def caught_up(self, sequence: int, timeout: float = 10.0) -> None:
        """Read your writes: wait until the boards projection has applied ``sequence``."""
        await caught_up(self._pool, SCHEMA, PROJECTION, sequence, timeout)

    # -- boards ----------------------------------------------------------------------------------

    async def board(self, ref: str) -> BoardOut:
        """By id (deleted too), or a live board's slug or unique id prefix."""
        if not ref:
            raise ApiError(404, "board.not_found", "no board ''")
        rows = await self._fetch(
            f'SELECT {_BOARD_COLUMNS} FROM "{SCHEMA}".boards WHERE board_id = $1'
            " OR (NOT deleted AND (slug = $1 OR left(board_id, length($1)) = $1))"
            " ORDER BY created_at, board_id",
            ref,
        )
        for matches in (
            [r for r in rows if r["board_id"] == ref],
            [r for r in rows if r["slug"] == ref],
        ):
            if matches:
                return board_out(matches[0])
        if not rows:
            raise ApiError(404, "board.not_found", f"no board {ref!r}")
        if len(rows) > 1:
            raise ApiError(
                409,
                "board.ambiguous",
                f"{ref!r} matches {len(rows)} boards: give more of the id (or the slug)",
                {"matches": [r["board_id"] for r in rows]},
            )
        return board_out(rows[0])

    async def boards(self, include_deleted: bool = False) -> list[BoardOut]:
        where = "" if include_deleted else "WHERE NOT deleted"
        rows = await self._fetch(
            f'SELECT {_BOARD_COLUMNS} FROM "{SCHEMA}".boards {where} ORDER BY created_at, board_id'
        )
        return [board_out(r) for r in rows]

    async def slug_taken(self, slug: str) -> bool:
        """A live board has this slug."""
        rows = await self._fetch(
            f'SELECT 1 FROM "{SCHEMA}".boards WHERE slug = $1 AND NOT deleted LIMIT 1', slug
        )
        return bool(rows)

    async def snapshot(self, board_id: str) -> BoardSnapshot:
        """The board and everything on it, consistent with ``seq`` (404 ``board.not_found``)."""
        try:
            async with self._pool.acquire() as conn:
                tx = conn.transaction(isolation="repeatable_read", readonly=True)
                async with tx:
                    board = await conn.fetchrow(
                        f'SELECT {_BOARD_COLUMNS} FROM "{SCHEMA}".boards WHERE board_id = $1',
                        board_id,
                    )
                    if board is None:
                        raise ApiError(404, "board.not_found", f"no board {board_id!r}")
                    zones = await conn.fetch(_ZONES + " ORDER BY z, zone_id", board_id)
                    notes = await conn.fetch(_NOTES + " ORDER BY note_id", board_id)
                    cards = await conn.fetch(
                        _CARDS + " ORDER BY c.placed_at, c.worktree_id", board_id
                    )
                    comments = await conn.fetch(
                        _COMMENTS + " ORDER BY created_at, comment_id", board_id
                    )
                    reactions = await conn.fetch(
                        _REACTIONS + _BY_EMOJI,
                        board_id,
                    )
                    triggers = await conn.fetch(
                        _TRIGGERS + " AND status = ANY($2::text[]) ORDER BY created_at, trigger_id",
                        board_id,
                        list(PENDING),
                    )
        except _NOT_YET:
            raise ApiError(404, "board.not_found", f"no board {board_id!r}") from None
        out = board_out(board)
        return BoardSnapshot(
            board=out,
            zones=[zone_out(r) for r in zones],
            notes=[note_out(r) for r in notes],
            cards=[card_out(r) for r in cards],
            comments=threads(list(comments), grouped_reactions(list(reactions))),
            triggers=[trigger_out(r) for r in triggers],
            seq=out.last_seq,
        )

    # -- objects on a board ------------------------------------------------------------------------

    async def zone(self, board_id: str, zone_id: str) -> ZoneOut:
        rows = await self._fetch(_ZONES + " AND zone_id = $2", board_id, zone_id)
        if not rows:
            raise ApiError(404, "zone.not_found", f"no zone {zone_id!r} on this board")
        return zone_out(rows[0])

    async def note(self, board_id: str, note_id: str) -> NoteOut:
        rows = await self._fetch(_NOTES + " AND note_id = $2", board_id, note_id)
        if not rows:
            raise ApiError(404, "note.not_found", f"no note {note_id!r} on this board")
        return note_out(rows[0])

    async def card(self, board_id: str, worktree_id: str) -> CardOut:
        rows = await self._fetch(_CARDS + " AND c.worktree_id = $2", board_id, worktree_id)
        if not rows:
            raise ApiError(404, "card.not_found", f"worktree {worktree_id!r} is not on this board")
        return card_out(rows[0])

    async def comment(self, board_id: str, comment_id: str) -> CommentOut:
        """A live comment; a thread's first comment comes with its replies."""
        rows = await self._fetch(
            _COMMENTS + " AND (comment_id = $2 OR parent_id = $2) ORDER BY created_at, comment_id",
            board_id,
            comment_id,
        )
        found = [r for r in rows if r["comment_id"] == comment_id]
        if not found:
            raise ApiError(404, "comment.not_found", f"no comment {comment_id!r} on this board")
        ids = [r["comment_id"] for r in rows]
        reactions = grouped_reactions(
            await self._fetch(
                _REACTIONS + " AND comment_id = ANY($2::text[])" + _BY_EMOJI,
                board_id,
                ids,
            )
        )
        replies = [comment_out(r, reactions) for r in rows if r["parent_id"] == comment_id]
        return comment_out(found[0], reactions, replies)

    async def trigger(self, board_id: str, trigger_id: str) -> TriggerOut:
        rows = await self._fetch(_TRIGGERS + " AND trigger_id = $2", board_id, trigger_id)
        if not rows:
            raise ApiError(404, "trigger.not_found", f"no trigger {trigger_id!r} on this board")
        return trigger_out(rows[0])

    async def latest_trigger(self, board_id: str, worktree_id: str) -> TriggerOut | None:
        """The trigger most recently requested for a worktree's card on the board, if any."""
        rows = await self._fetch(
            _TRIGGERS + " AND worktree_id = $2 ORDER BY created_at DESC, last_seq DESC LIMIT 1",
            board_id,
            worktree_id,
        )
        return trigger_out(rows[0]) if rows else None
