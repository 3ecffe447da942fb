"""REST and the per-board WebSocket for the canvas: commands out through the command client,
answers from the canvas read model (schema ``canvas``, read-only), presence over core NATS.

WebSocket ``/ws/boards/{ref}?after=SEQ&name=&emoji=``:

- without ``after``: a ``snapshot`` frame (the whole board at ``seq``), then every board event
  after it; with ``after``: the events after ``SEQ`` (a reconnect), no gap, no duplicate;
- the viewers already there (``presence``), then others' ``cursor``, ``drag``, ``joined`` and
  ``left`` frames: only this board's, never another's;
- client frames (JSON, ``type``-tagged, checked with msgspec): ``cursor {x, y}`` (throttled to
  20 a second), ``drag {worktree_id, x, y}`` (a card's intermediate position, ephemeral),
  ``leave {}`` (cursor gone), and ``command {id, command}`` where ``command`` is a canvas command
  of the event contract (``{"type": "canvas.MoveCard", "worktree_id": ..., "x": ..., "y": ...}``;
  the board is the socket's) and ``id`` its idempotency key: the answer is ``accepted {id, seq}``
  or ``rejected {id, code, message, detail}``; the same id twice has one effect. A malformed frame
  gets ``error {code, message}`` and the socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, WebSocket, delete, get, patch, post, put, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_201_CREATED
from litestar.types import ControllerRouterHandler
from nats.aio.client import Client
from nats.aio.msg import Msg
from orrery.events import Command, subjects
from orrery.events import canvas as c
from orrery.events.sessions import AgentSettings
from orrery.gateway import auth
from orrery.gateway.api import (
    CommandIn,
    ContextApi,
    by_tag,
    error_frame,
    follow,
    run_command,
    to_command,
)
from orrery.gateway.canvas_model import (
    BoardOut,
    BoardSnapshot,
    CanvasReadModel,
    CardOut,
    CommentOut,
    NoteOut,
    TriggerOut,
    ZoneOut,
)
from orrery.gateway.errors import ApiError, check_value
from orrery.gateway.sessions import MAX_SEQ, derived_id
from orrery.gateway.worktrees import command_id
from orrery.runtime.clock import UUID7
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE

log = logging.getLogger(__name__)

WAIT_S = 30.0
CURSOR_INTERVAL_S = 0.05  # at most 20 cursor frames a second per viewer, the last one kept
HERE_EVERY_S = 30.0  # each gateway re-announces its viewers, so every facepile converges
GONE_AFTER_S = 95.0  # a viewer no gateway announced for this long has left
OUT_QUEUE = 10_000
_encoder = msgspec.json.Encoder()
_ids = UUID7()
AgentName = Literal["builtin", "claude-code", "codex", "gemini", "opencode"]


# --- request bodies --------------------------------------------------------------------------

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Text = Annotated[str, msgspec.Meta(max_length=20_000)]
Coord = Annotated[float, msgspec.Meta(ge=-1e7, le=1e7)]
Size = Annotated[float, msgspec.Meta(gt=0, le=1e5)]
ZoneSize = Annotated[float, msgspec.Meta(ge=20, le=1e5)]


class TriggerIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    template: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    behavior: c.TriggerBehavior = "show_picker"
    agent: AgentName = "builtin"
    model: Annotated[str, msgspec.Meta(max_length=200)] = ""
    permission_mode: Literal["ask", "auto", "allow-all"] = "ask"

    def contract(self) -> c.ZoneTrigger:
        return c.ZoneTrigger(
            template=self.template,
            behavior=self.behavior,
            settings=AgentSettings(
                agent=self.agent, model=self.model, permission_mode=self.permission_mode
            ),
        )


class CreateBoardIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name
    slug: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    icon: Annotated[str, msgspec.Meta(max_length=32)] = ""
    color: str | None = None
    background_color: str | None = None
    description: Text = ""
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class UpdateBoardIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name | None = None
    icon: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    color: str | None = None
    background_color: str | None = None
    description: Text | None = None
    context: dict[str, Any] | None = None


class ZoneIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    label: Annotated[str, msgspec.Meta(max_length=200)]
    x: Coord
    y: Coord
    width: ZoneSize
    height: ZoneSize
    border_color: str = "#5b8def"
    background_color: str = "#5b8def1a"
    locked: bool = False
    trigger: TriggerIn | None = None


class ZonePatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    label: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    x: Coord | None = None
    y: Coord | None = None
    width: ZoneSize | None = None
    height: ZoneSize | None = None
    border_color: str | None = None
    background_color: str | None = None
    locked: bool | None = None
    trigger: TriggerIn | None = None
    clear_trigger: bool = False


class NoteIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    x: Coord
    y: Coord
    kind: c.NoteKind = "markdown"
    width: Size = 300
    height: Size | None = None
    content: Text = ""
    font_size: int = 14
    color: str | None = None
    background_color: str | None = None


class NotePatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    x: Coord | None = None
    y: Coord | None = None
    width: Size | None = None
    height: Size | None = None
    content: Text | None = None
    font_size: int | None = None
    color: str | None = None
    background_color: str | None = None


class CardIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    x: Coord
    y: Coord
    width: Size | None = None
    height: Size | None = None


class CardMoveOut(msgspec.Struct, frozen=True, kw_only=True):
    card: CardOut
    trigger: TriggerOut | None  # the trigger this drop requested, if it entered such a zone


class ChooseIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    action: c.TriggerAction = "new_session"
    session: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)] | None = None
    agent: AgentName | None = None
    model: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    permission_mode: Literal["ask", "auto", "allow-all"] | None = None


class AnchorIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: c.AnchorKind = "board"
    target_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    x: Coord | None = None
    y: Coord | None = None

    def contract(self) -> c.Anchor:
        return c.Anchor(kind=self.kind, target_id=self.target_id, x=self.x, y=self.y)


class CommentIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    content: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
    anchor: AnchorIn = AnchorIn()
    parent: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    mentions: Annotated[list[str], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )


class CommentPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    content: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)] | None = None
    anchor: AnchorIn | None = None
    mentions: Annotated[list[str], msgspec.Meta(max_length=50)] | None = None


class ReactionIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    emoji: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


def _fields(body: msgspec.Struct, **replaced: Any) -> dict[str, Any]:
    """A request body's fields as the contract's keyword arguments (same names), some replaced."""
    return msgspec.structs.asdict(body) | replaced


def _trigger(trigger: TriggerIn | None) -> c.ZoneTrigger | None:
    return trigger.contract() if trigger is not None else None


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:64].strip("-")
    return slug or "board"


# --- the shared API object -------------------------------------------------------------------


class CanvasApi(ContextApi[CanvasReadModel]):
    """The canvas handlers' command client, read models, NATS and this gateway's presence."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.presence = PresenceHub(self.nc)

    async def board(self, ref: str) -> BoardOut:
        return await self.model.board(ref)


# --- REST ------------------------------------------------------------------------------------


class BoardsController(Controller):
    path = "/api/boards"
    tags = ["canvas"]

    @post("/", summary="Create a board (the slug defaults to one made from the name)")
    async def create(
        self, request: Request[Any, Any, Any], data: CreateBoardIn, canvas: CanvasApi
    ) -> Response[BoardOut]:
        if data.slug is not None:
            slug = data.slug
            if await canvas.model.slug_taken(slug):
                raise ApiError(409, "board.slug_taken", f"a board already has the slug {slug!r}")
        else:
            base, n = slugify(data.name), 1
            slug = base
            while await canvas.model.slug_taken(slug):
                n += 1
                slug = f"{base[:60]}-{n}"
        board_id = derived_id(request, "board")
        await canvas.send(
            c.CreateBoard(
                command_id=command_id(request), board_id=board_id, **_fields(data, slug=slug)
            )
        )
        return Response(await canvas.model.board(board_id), status_code=HTTP_201_CREATED)

    @get("/", summary="List boards")
    async def list_boards(
        self, canvas: CanvasApi, include_deleted: Annotated[bool, Parameter(query="all")] = False
    ) -> list[BoardOut]:
        return await canvas.model.boards(include_deleted)

    @get("/{ref:str}", summary="A board with its zones, notes, cards, comments and open triggers")
    async def show(self, ref: str, canvas: CanvasApi) -> BoardSnapshot:
        return await canvas.model.snapshot((await canvas.board(ref)).id)

    @patch("/{ref:str}", summary="Change a board's name, icon, colours, description or context")
    async def update(
        self, request: Request[Any, Any, Any], ref: str, data: UpdateBoardIn, canvas: CanvasApi
    ) -> BoardOut:
        board = await canvas.board(ref)
        await canvas.send(
            c.UpdateBoard(command_id=command_id(request), board_id=board.id, **_fields(data))
        )
        return await canvas.model.board(board.id)

    @delete("/{ref:str}", summary="Delete a board", status_code=200)
    async def remove(
        self, request: Request[Any, Any, Any], ref: str, canvas: CanvasApi
    ) -> BoardOut:
        board = await canvas.board(ref)
        await canvas.send(c.DeleteBoard(command_id=command_id(request), board_id=board.id))
        return await canvas.model.board(board.id)

    # -- zones ---------------------------------------------------------------------------------

    @post("/{ref:str}/zones", summary="Add a zone (optionally with a trigger)")
    async def add_zone(
        self, request: Request[Any, Any, Any], ref: str, data: ZoneIn, canvas: CanvasApi
    ) -> Response[ZoneOut]:
        board = await canvas.board(ref)
        zone_id = derived_id(request, "zone")
        await canvas.send(
            c.AddZone(
                command_id=command_id(request),
                board_id=board.id,
                zone=c.Zone(zone_id=zone_id, **_fields(data, trigger=_trigger(data.trigger))),
            )
        )
        return Response(await canvas.model.zone(board.id, zone_id), status_code=HTTP_201_CREATED)

    @patch("/{ref:str}/zones/{zone_id:str}", summary="Move, resize, relabel, lock or retrigger")
    async def update_zone(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        zone_id: str,
        data: ZonePatch,
        canvas: CanvasApi,
    ) -> ZoneOut:
        board = await canvas.board(ref)
        await canvas.send(
            c.UpdateZone(
                command_id=command_id(request),
                board_id=board.id,
                zone_id=zone_id,
                **_fields(data, trigger=_trigger(data.trigger)),
            )
        )
        return await canvas.model.zone(board.id, zone_id)

    @delete(
        "/{ref:str}/zones/{zone_id:str}",
        summary="Delete a zone; with pinned cards say cards=unpin or cards=remove",
        status_code=200,
    )
    async def delete_zone(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        zone_id: str,
        canvas: CanvasApi,
        cards: c.CardsOnZoneDelete = "refuse",
    ) -> BoardSnapshot:
        board = await canvas.board(ref)
        await canvas.send(
            c.DeleteZone(
                command_id=command_id(request), board_id=board.id, zone_id=zone_id, cards=cards
            )
        )
        return await canvas.model.snapshot(board.id)

    # -- notes ---------------------------------------------------------------------------------

    @post("/{ref:str}/notes", summary="Add a markdown note or a text")
    async def add_note(
        self, request: Request[Any, Any, Any], ref: str, data: NoteIn, canvas: CanvasApi
    ) -> Response[NoteOut]:
        board = await canvas.board(ref)
        note_id = derived_id(request, "note")
        await canvas.send(
            c.AddNote(
                command_id=command_id(request),
                board_id=board.id,
                note=c.Note(note_id=note_id, **_fields(data)),
            )
        )
        return Response(await canvas.model.note(board.id, note_id), status_code=HTTP_201_CREATED)

    @patch("/{ref:str}/notes/{note_id:str}", summary="Move, resize or edit a note")
    async def update_note(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        note_id: str,
        data: NotePatch,
        canvas: CanvasApi,
    ) -> BoardSnapshot:
        board = await canvas.board(ref)
        await canvas.send(
            c.UpdateNote(
                command_id=command_id(request),
                board_id=board.id,
                note_id=note_id,
                **_fields(data),
            )
        )
        return await canvas.model.snapshot(board.id)

    @delete("/{ref:str}/notes/{note_id:str}", summary="Delete a note", status_code=200)
    async def delete_note(
        self, request: Request[Any, Any, Any], ref: str, note_id: str, canvas: CanvasApi
    ) -> BoardSnapshot:
        board = await canvas.board(ref)
        await canvas.send(
            c.DeleteNote(command_id=command_id(request), board_id=board.id, note_id=note_id)
        )
        return await canvas.model.snapshot(board.id)

    # -- cards ---------------------------------------------------------------------------------

    @put(
        "/{ref:str}/cards/{worktree:str}",
        summary="Place or drop a worktree's card (board coordinates); pins it to the zone below",
        status_code=200,
    )
    async def move_card(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        worktree: str,
        data: CardIn,
        canvas: CanvasApi,
    ) -> CardMoveOut:
        board = await canvas.board(ref)
        found = await canvas.worktrees.worktree(worktree)
        sent = await canvas.send(
            c.MoveCard(
                command_id=command_id(request),
                board_id=board.id,
                worktree_id=found.id,
                x=data.x,
                y=data.y,
                width=data.width,
                height=data.height,
            )
        )
        trigger = None
        if sent.reply is not None and sent.reply.events >= 2:  # CardMoved + ZoneTriggerRequested
            trigger = await canvas.model.latest_trigger(board.id, found.id)
        return CardMoveOut(card=await canvas.model.card(board.id, found.id), trigger=trigger)

    @post("/{ref:str}/cards/{worktree:str}/unpin", summary="Unpin a card from its zone")
    async def unpin_card(
        self, request: Request[Any, Any, Any], ref: str, worktree: str, canvas: CanvasApi
    ) -> CardOut:
        board = await canvas.board(ref)
        found = await canvas.worktrees.worktree(worktree)
        await canvas.send(
            c.UnpinCard(command_id=command_id(request), board_id=board.id, worktree_id=found.id)
        )
        return await canvas.model.card(board.id, found.id)

    @delete("/{ref:str}/cards/{worktree:str}", summary="Take a card off the board", status_code=200)
    async def remove_card(
        self, request: Request[Any, Any, Any], ref: str, worktree: str, canvas: CanvasApi
    ) -> BoardSnapshot:
        board = await canvas.board(ref)
        found = await canvas.worktrees.worktree(worktree)
        await canvas.send(
            c.RemoveCard(command_id=command_id(request), board_id=board.id, worktree_id=found.id)
        )
        return await canvas.model.snapshot(board.id)

    # -- triggers ------------------------------------------------------------------------------

    @get("/{ref:str}/triggers/{trigger_id:str}", summary="A zone trigger and what became of it")
    async def trigger(self, ref: str, trigger_id: str, canvas: CanvasApi) -> TriggerOut:
        return await canvas.model.trigger((await canvas.board(ref)).id, trigger_id)

    @post(
        "/{ref:str}/triggers/{trigger_id:str}/choose",
        summary="Answer a show_picker trigger: new session, or prompt, fork or spawn a session",
        status_code=200,
    )
    async def choose(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        trigger_id: str,
        data: ChooseIn,
        canvas: CanvasApi,
    ) -> TriggerOut:
        board = await canvas.board(ref)
        offered = await canvas.model.trigger(board.id, trigger_id)
        settings = None
        if offered.settings is not None and (data.agent or data.model or data.permission_mode):
            base = msgspec.convert(offered.settings, AgentSettings)
            settings = msgspec.structs.replace(
                base,
                agent=data.agent or base.agent,
                model=data.model if data.model is not None else base.model,
                permission_mode=data.permission_mode or base.permission_mode,
            )
        await canvas.send(
            c.ChooseZoneTrigger(
                command_id=command_id(request),
                board_id=board.id,
                trigger_id=trigger_id,
                action=data.action,
                session_id=data.session,
                prompt=data.prompt,
                settings=settings,
            )
        )
        return await canvas.model.trigger(board.id, trigger_id)

    @post(
        "/{ref:str}/triggers/{trigger_id:str}/dismiss",
        summary="Dismiss a show_picker trigger",
        status_code=200,
    )
    async def dismiss(
        self, request: Request[Any, Any, Any], ref: str, trigger_id: str, canvas: CanvasApi
    ) -> TriggerOut:
        board = await canvas.board(ref)
        await canvas.send(
            c.DismissZoneTrigger(
                command_id=command_id(request), board_id=board.id, trigger_id=trigger_id
            )
        )
        return await canvas.model.trigger(board.id, trigger_id)

    # -- comments ------------------------------------------------------------------------------

    @post("/{ref:str}/comments", summary="Comment (spatial or attached), or reply to a thread")
    async def comment(
        self, request: Request[Any, Any, Any], ref: str, data: CommentIn, canvas: CanvasApi
    ) -> Response[CommentOut]:
        board = await canvas.board(ref)
        comment_id = derived_id(request, "comment")
        await canvas.send(
            c.AddComment(
                command_id=command_id(request),
                board_id=board.id,
                comment_id=comment_id,
                content=data.content,
                anchor=data.anchor.contract(),
                parent_id=data.parent,
                mentions=data.mentions,
            )
        )
        return Response(
            await canvas.model.comment(board.id, comment_id), status_code=HTTP_201_CREATED
        )

    @patch("/{ref:str}/comments/{comment_id:str}", summary="Edit a comment or move its pin")
    async def edit_comment(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        comment_id: str,
        data: CommentPatch,
        canvas: CanvasApi,
    ) -> CommentOut:
        board = await canvas.board(ref)
        key = command_id(request)
        if data.content is not None:
            await canvas.send(
                c.EditComment(
                    command_id=key,
                    board_id=board.id,
                    comment_id=comment_id,
                    content=data.content,
                    mentions=data.mentions,
                )
            )
        if data.anchor is not None:
            await canvas.send(
                c.MoveComment(
                    command_id=f"{key}-move",
                    board_id=board.id,
                    comment_id=comment_id,
                    anchor=data.anchor.contract(),
                )
            )
        return await canvas.model.comment(board.id, comment_id)

    async def _resolve(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        comment_id: str,
        canvas: CanvasApi,
        on: bool,
    ) -> CommentOut:
        board = await canvas.board(ref)
        await canvas.send(
            c.ResolveComment(
                command_id=command_id(request),
                board_id=board.id,
                comment_id=comment_id,
                resolved=on,
            )
        )
        return await canvas.model.comment(board.id, comment_id)

    @post(
        "/{ref:str}/comments/{comment_id:str}/resolve", summary="Resolve a thread", status_code=200
    )
    async def resolve(
        self, request: Request[Any, Any, Any], ref: str, comment_id: str, canvas: CanvasApi
    ) -> CommentOut:
        return await self._resolve(request, ref, comment_id, canvas, True)

    @post("/{ref:str}/comments/{comment_id:str}/reopen", summary="Reopen a thread", status_code=200)
    async def reopen(
        self, request: Request[Any, Any, Any], ref: str, comment_id: str, canvas: CanvasApi
    ) -> CommentOut:
        return await self._resolve(request, ref, comment_id, canvas, False)

    @post(
        "/{ref:str}/comments/{comment_id:str}/reactions",
        summary="Toggle your reaction with this emoji",
        status_code=200,
    )
    async def react(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        comment_id: str,
        data: ReactionIn,
        canvas: CanvasApi,
    ) -> CommentOut:
        board = await canvas.board(ref)
        await canvas.send(
            c.ToggleReaction(
                command_id=command_id(request),
                board_id=board.id,
                comment_id=comment_id,
                emoji=data.emoji,
            )
        )
        return await canvas.model.comment(board.id, comment_id)

    @delete(
        "/{ref:str}/comments/{comment_id:str}",
        summary="Delete a comment (a thread's first comment takes its replies)",
        status_code=200,
    )
    async def delete_comment(
        self, request: Request[Any, Any, Any], ref: str, comment_id: str, canvas: CanvasApi
    ) -> BoardSnapshot:
        board = await canvas.board(ref)
        await canvas.send(
            c.DeleteComment(
                command_id=command_id(request), board_id=board.id, comment_id=comment_id
            )
        )
        return await canvas.model.snapshot(board.id)


# --- presence ----------------------------------------------------------------------------------

Sink = Callable[[bytes], None]


class PresenceHub:
    """This gateway's view of who is on which board, fed by ``canvas.live.*`` (every
    gateway's viewers), and the local sockets each board's presence frames go to."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.viewers: dict[str, dict[str, c.Presence]] = {}  # board -> connection -> last seen
        self.seen: dict[str, float] = {}  # connection -> monotonic time last heard of
        self.sinks: dict[str, dict[str, Sink]] = {}  # board -> local connection -> sink
        self._sub: Any = None
        self._beat: asyncio.Task[None] | None = None
        self._decoder = msgspec.json.Decoder(c.Presence)

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self.nc.subscribe(subjects.live_subjects("canvas"), cb=self._on)
            self._beat = asyncio.create_task(self._beats())

    async def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    def facepile(self, board_id: str) -> list[dict[str, Any]]:
        return [_presence_frame(p, "viewer") for p in self.viewers.get(board_id, {}).values()]

    def attach(self, board_id: str, connection: str, sink: Sink) -> None:
        self.sinks.setdefault(board_id, {})[connection] = sink

    def detach(self, board_id: str, connection: str) -> None:
        self.sinks.get(board_id, {}).pop(connection, None)

    async def publish(self, presence: c.Presence) -> None:
        with contextlib.suppress(*NATS_UNAVAILABLE):
            await self.nc.publish(
                subjects.live_subject("canvas", presence.board_id), _encoder.encode(presence)
            )

    async def _on(self, msg: Msg) -> None:
        try:
            presence = self._decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        board = self.viewers.setdefault(presence.board_id, {})
        known = presence.connection in board
        if presence.kind == "left":
            board.pop(presence.connection, None)
            self.seen.pop(presence.connection, None)
        else:
            board[presence.connection] = presence
            self.seen[presence.connection] = time.monotonic()
        if presence.kind == "here" and known:
            return  # a beat: nothing new to show
        kind = "joined" if presence.kind == "here" else presence.kind
        frame = _encoder.encode(_presence_frame(presence, kind))
        for connection, sink in list(self.sinks.get(presence.board_id, {}).items()):
            if connection != presence.connection:
                sink(frame)

    async def _beats(self) -> None:
        while True:
            await asyncio.sleep(HERE_EVERY_S)
            now = time.monotonic()
            for board_id, sinks in list(self.sinks.items()):
                for connection in list(sinks):
                    mine = self.viewers.get(board_id, {}).get(connection)
                    if mine is not None:
                        await self.publish(msgspec.structs.replace(mine, kind="here"))
            for board_id, board in list(self.viewers.items()):
                for connection, presence in list(board.items()):
                    if now - self.seen.get(connection, now) > GONE_AFTER_S:
                        await self._on_gone(board_id, presence)

    async def _on_gone(self, board_id: str, presence: c.Presence) -> None:
        self.viewers.get(board_id, {}).pop(presence.connection, None)
        self.seen.pop(presence.connection, None)
        frame = _encoder.encode(_presence_frame(presence, "left"))
        for sink in list(self.sinks.get(board_id, {}).values()):
            sink(frame)


def _presence_frame(p: c.Presence, kind: str) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": kind,
        "connection": p.connection,
        "user": p.user,
        "name": p.name,
        "emoji": p.emoji,
    }
    if kind != "left":
        frame |= {"x": p.x, "y": p.y}
    if kind == "drag":
        frame["worktree_id"] = p.worktree_id
    return frame


# --- the board WebSocket -------------------------------------------------------------------------


class CursorIn(msgspec.Struct, frozen=True, tag="cursor", forbid_unknown_fields=True):
    x: Coord
    y: Coord


class DragIn(msgspec.Struct, frozen=True, tag="drag", forbid_unknown_fields=True):
    worktree_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    x: Coord
    y: Coord


class LeaveIn(msgspec.Struct, frozen=True, tag="leave", forbid_unknown_fields=True):
    pass


ClientFrame = CursorIn | DragIn | LeaveIn | CommandIn
_frames = msgspec.json.Decoder(ClientFrame)
# What a board's socket may send: the board's own commands (never another board's or a create).
SOCKET_COMMANDS = by_tag(
    c.UpdateBoard,
    c.AddZone,
    c.UpdateZone,
    c.DeleteZone,
    c.AddNote,
    c.UpdateNote,
    c.DeleteNote,
    c.MoveCard,
    c.UnpinCard,
    c.RemoveCard,
    c.ChooseZoneTrigger,
    c.DismissZoneTrigger,
    c.AddComment,
    c.EditComment,
    c.MoveComment,
    c.ResolveComment,
    c.DeleteComment,
    c.ToggleReaction,
)


_error = error_frame


def to_board_command(frame: CommandIn, board_id: str) -> Command:
    """The board command a socket's ``command`` frame stands for, on the socket's board."""
    return to_command(frame, SOCKET_COMMANDS, {"board_id": board_id})


class _Socket:
    """One viewer's socket on one board."""

    def __init__(self, socket: WebSocket[Any, Any, Any], canvas: CanvasApi, board_id: str) -> None:
        self.socket = socket
        self.canvas = canvas
        self.board_id = board_id
        self.out: asyncio.Queue[bytes] = asyncio.Queue(maxsize=OUT_QUEUE)
        params = socket.query_params
        self.connection = _ids.new()
        self.principal = auth.current.get() or auth.Principal("system", "viewer", "anonymous")
        name = self.principal.name if self.principal.kind != "anonymous" else ""
        name = name or (params.get("name") or "").strip()[:80]
        self.me = c.Presence(
            kind="here",
            board_id=board_id,
            connection=self.connection,
            user=self.principal.user_id,
            name=name or f"guest-{self.connection[-4:]}",
            emoji=(params.get("emoji") or "")[:16],
        )
        self._last_cursor = 0.0
        self._pending_cursor: c.Presence | None = None
        self._flush: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.behind = False

    # frames out -----------------------------------------------------------------------------

    def ephemeral(self, frame: bytes) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a slow viewer misses cursor frames only
            self.out.put_nowait(frame)

    def durable(self, frame: bytes) -> None:
        """An event frame: never dropped silently. A viewer too far behind is disconnected
        (1013) and resumes with ``after`` = the last seq it saw."""
        if self.behind:
            return
        try:
            self.out.put_nowait(frame)
        except asyncio.QueueFull:
            self.behind = True
            task = asyncio.create_task(
                self.socket.close(code=1013, reason="too far behind: reconnect with after")
            )
            self._tasks.add(task)

    async def pump(self) -> None:
        while not self.behind:
            frame = await self.out.get()
            await self.socket.send_data(frame.decode(), mode="text")

    # frames in ------------------------------------------------------------------------------

    async def listen(self) -> None:
        while True:
            raw = await self.socket.receive_data(mode="text")
            try:
                frame = _frames.decode(raw)
            except (msgspec.DecodeError, RecursionError) as exc:
                self.ephemeral(_error("frame.invalid", str(exc)))
                continue
            match frame:
                case CursorIn(x=x, y=y):
                    self._cursor(msgspec.structs.replace(self.me, kind="cursor", x=x, y=y))
                case DragIn(worktree_id=wid, x=x, y=y):
                    drag = msgspec.structs.replace(self.me, kind="drag", x=x, y=y, worktree_id=wid)
                    await self.canvas.presence.publish(self._stamp(drag))
                case LeaveIn():
                    left = msgspec.structs.replace(self.me, kind="cursor", x=None, y=None)
                    await self.canvas.presence.publish(self._stamp(left))
                case CommandIn():
                    task = asyncio.create_task(self._command(frame))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    def _stamp(self, presence: c.Presence) -> c.Presence:
        return msgspec.structs.replace(presence, at=time.time())

    def _cursor(self, presence: c.Presence) -> None:
        """Throttled, the last position always sent."""
        self._pending_cursor = presence
        if self._flush is None or self._flush.done():
            wait = max(0.0, self._last_cursor + CURSOR_INTERVAL_S - time.monotonic())
            self._flush = asyncio.create_task(self._send_cursor(wait))

    async def _send_cursor(self, wait: float) -> None:
        await asyncio.sleep(wait)
        pending, self._pending_cursor = self._pending_cursor, None
        if pending is not None:
            self._last_cursor = time.monotonic()
            await self.canvas.presence.publish(self._stamp(pending))

    async def _command(self, frame: CommandIn) -> None:
        reply = await run_command(
            self.canvas.client,
            self.principal,
            frame,
            lambda f: to_board_command(f, self.board_id),
        )
        self.ephemeral(reply)

    async def close(self) -> None:
        for task in (*self._tasks, *([self._flush] if self._flush else [])):
            task.cancel()


@websocket("/ws/boards/{ref:str}")
async def board_stream(socket: WebSocket[Any, Any, Any], ref: str, canvas: CanvasApi) -> None:
    """A board's snapshot (or its events after ``?after=SEQ``), then its events and presence."""
    await socket.accept()
    try:
        after = int(socket.query_params.get("after", "0"))
        if not 0 <= after <= MAX_SEQ:
            raise ValueError(after)
        check_value("the path", ref)
        board = await canvas.board(ref)
    except ValueError:
        await socket.send_data(
            _error("request.invalid", "after is a stream sequence (>= 0)").decode()
        )
        await socket.close(code=1008)
        return
    except ApiError as exc:
        await socket.send_data(_error(exc.code, exc.message).decode())
        await socket.close(code=1008)
        return
    await canvas.presence.start()
    viewer = _Socket(socket, canvas, board.id)
    if after == 0:
        snapshot = await canvas.model.snapshot(board.id)
        after = snapshot.seq
        viewer.ephemeral(
            _encoder.encode({"type": "snapshot", "seq": snapshot.seq, "board": snapshot})
        )
    viewer.ephemeral(
        _encoder.encode(
            {
                "type": "presence",
                "you": viewer.connection,
                "viewers": canvas.presence.facepile(board.id),
            }
        )
    )

    async def deliver(frame: bytes) -> None:
        viewer.durable(frame)

    canvas.presence.attach(board.id, viewer.connection, viewer.ephemeral)
    durable = await follow(canvas.js, canvas.registry, "canvas", "board", board.id, after, deliver)
    await canvas.presence.publish(viewer._stamp(viewer.me))
    tasks = [asyncio.create_task(viewer.pump()), asyncio.create_task(viewer.listen())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await viewer.close()
        canvas.presence.detach(board.id, viewer.connection)
        await canvas.presence.publish(msgspec.structs.replace(viewer.me, kind="left"))
        with contextlib.suppress(Exception):
            await durable.unsubscribe()


ROUTES: list[ControllerRouterHandler] = [BoardsController, board_stream]
