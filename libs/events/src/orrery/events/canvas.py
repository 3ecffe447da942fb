"""Canvas context: boards, and everything on a board (zones, notes, worktree cards, comments,
zone triggers).

One subject per board, ``canvas.evt.board.<board_id>``: a board's whole state is decided in one
place (a card's zone and pinning, a zone trigger firing at most once per entry, a zone deleted
with its cards) and one per-board order of events is what every client replays, so a WebSocket
can resume a board "after seq N" with no gap.

Positions are board coordinates of an object's top-left corner; a card pinned to a zone stores
its position relative to the zone's top-left, so it moves with the zone.

Not events: cursor moves and drag frames (ephemeral, core NATS ``canvas.live.<board_id>``), see
``Presence`` below.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec
from orrery.events.base import Command, Event
from orrery.events.registry import Registry
from orrery.events.sessions import AgentSettings

TriggerBehavior = Literal["always_new", "show_picker"]
TriggerAction = Literal["new_session", "prompt", "fork", "spawn"]
NoteKind = Literal["markdown", "text"]
CardsOnZoneDelete = Literal["refuse", "unpin", "remove"]
AnchorKind = Literal["board", "zone", "worktree", "session", "task", "message"]

# --- value objects --------------------------------------------------------------------------


class ZoneTrigger(msgspec.Struct, frozen=True, kw_only=True):
    """What a zone does when a worktree card enters it: render ``template`` (Jinja2, sandboxed,
    the one context of SPEC §3) and either start a new session with ``settings`` at once
    (``always_new``) or let the user pick (``show_picker``: new session, prompt, fork, spawn)."""

    template: str
    behavior: TriggerBehavior = "show_picker"
    settings: AgentSettings = AgentSettings()


class Zone(msgspec.Struct, frozen=True, kw_only=True):
    zone_id: str
    label: str
    x: float
    y: float
    width: float
    height: float
    border_color: str = "#5b8def"
    background_color: str = "#5b8def1a"
    locked: bool = False
    trigger: ZoneTrigger | None = None


class Note(msgspec.Struct, frozen=True, kw_only=True):
    """A markdown sticky note or a plain text object."""

    note_id: str
    kind: NoteKind
    x: float
    y: float
    width: float
    height: float | None = None  # markdown notes grow with their content
    content: str = ""
    font_size: int = 14
    color: str | None = None
    background_color: str | None = None


class Anchor(msgspec.Struct, frozen=True, kw_only=True):
    """Where a comment is.

    Spatial: ``x``/``y`` set. With ``kind`` ``board`` they are board coordinates; with ``zone``,
    ``worktree`` (its card) or ``session`` they are offsets from that object, so the pin follows
    it. Attached: no ``x``/``y``; the comment belongs to ``kind``/``target_id`` (a board, zone,
    worktree, session, task or message) and shows in its thread list."""

    kind: AnchorKind = "board"
    target_id: str | None = None
    x: float | None = None
    y: float | None = None


# --- commands --------------------------------------------------------------------------------


class CreateBoard(Command, tag="canvas.CreateBoard", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    name: str
    slug: str
    icon: str = ""
    color: str | None = None
    background_color: str | None = None
    description: str = ""
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class RenameBoard(Command, tag="canvas.RenameBoard", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    name: str


class UpdateBoard(Command, tag="canvas.UpdateBoard", frozen=True):
    """Change the given fields (``None``: keep)."""

    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    name: str | None = None
    icon: str | None = None
    color: str | None = None
    background_color: str | None = None
    description: str | None = None
    context: dict[str, Any] | None = None


class DeleteBoard(Command, tag="canvas.DeleteBoard", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str


class AddZone(Command, tag="canvas.AddZone", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    zone: Zone


class UpdateZone(Command, tag="canvas.UpdateZone", frozen=True):
    """Move, resize, relabel, recolour, lock or unlock a zone, or set or clear its trigger.
    ``None``: keep. A locked zone refuses everything but unlocking."""

    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    zone_id: str
    label: str | None = None
    x: float | None = None
    y: float | None = None
    width: float | None = None
    height: float | None = None
    border_color: str | None = None
    background_color: str | None = None
    locked: bool | None = None
    trigger: ZoneTrigger | None = None
    clear_trigger: bool = False


class DeleteZone(Command, tag="canvas.DeleteZone", frozen=True):
    """``cards``: what happens to the cards pinned to it. ``refuse`` (the default) is rejected
    with ``zone.has_cards`` (listing them) when there are any, so the caller can offer the
    choice: ``unpin`` keeps them where they are, ``remove`` takes them off the board."""

    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    zone_id: str
    cards: CardsOnZoneDelete = "refuse"


class AddNote(Command, tag="canvas.AddNote", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    note: Note


class UpdateNote(Command, tag="canvas.UpdateNote", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    note_id: str
    x: float | None = None
    y: float | None = None
    width: float | None = None
    height: float | None = None
    content: str | None = None
    font_size: int | None = None
    color: str | None = None
    background_color: str | None = None


class DeleteNote(Command, tag="canvas.DeleteNote", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    note_id: str


class MoveCard(Command, tag="canvas.MoveCard", frozen=True):
    """Place a worktree's card on the board, or drop it somewhere else: the end of a drag.
    ``x``/``y`` are board coordinates; the card is pinned to the zone its centre falls in (the
    topmost one) and a zone trigger fires when that zone differs from the card's zone before."""

    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    worktree_id: str
    x: float
    y: float
    width: float | None = None
    height: float | None = None


class UnpinCard(Command, tag="canvas.UnpinCard", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    worktree_id: str


class RemoveCard(Command, tag="canvas.RemoveCard", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    worktree_id: str


class ChooseZoneTrigger(Command, tag="canvas.ChooseZoneTrigger", frozen=True):
    """The answer to a ``show_picker`` offer: what to do, on which session, with which prompt
    (``None``: the rendered one) and settings (``None``: the zone's)."""

    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    trigger_id: str
    action: TriggerAction = "new_session"
    session_id: str | None = None
    prompt: str | None = None
    settings: AgentSettings | None = None


class DismissZoneTrigger(Command, tag="canvas.DismissZoneTrigger", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    trigger_id: str


class AddComment(Command, tag="canvas.AddComment", frozen=True):
    """A thread's first comment, or a reply (``parent_id``: a thread's first comment; replies
    take the thread's anchor)."""

    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    comment_id: str
    content: str
    anchor: Anchor = Anchor()
    parent_id: str | None = None
    mentions: list[str] = msgspec.field(default_factory=list)


class EditComment(Command, tag="canvas.EditComment", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    comment_id: str
    content: str
    mentions: list[str] | None = None


class MoveComment(Command, tag="canvas.MoveComment", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    comment_id: str
    anchor: Anchor


class ResolveComment(Command, tag="canvas.ResolveComment", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    comment_id: str
    resolved: bool = True


class DeleteComment(Command, tag="canvas.DeleteComment", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    comment_id: str


class ToggleReaction(Command, tag="canvas.ToggleReaction", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    comment_id: str
    emoji: str


# --- events ----------------------------------------------------------------------------------


class BoardCreated(Event, tag="canvas.BoardCreated", frozen=True):
    board_id: str
    name: str
    slug: str
    icon: str = ""
    color: str | None = None
    background_color: str | None = None
    description: str = ""
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class BoardRenamed(Event, tag="canvas.BoardRenamed", frozen=True):
    board_id: str
    name: str


class BoardUpdated(Event, tag="canvas.BoardUpdated", frozen=True):
    """The board's editable fields after the change (all of them)."""

    board_id: str
    name: str
    icon: str
    color: str | None
    background_color: str | None
    description: str
    context: dict[str, Any]


class BoardDeleted(Event, tag="canvas.BoardDeleted", frozen=True):
    board_id: str
    slug: str


class ZoneAdded(Event, tag="canvas.ZoneAdded", frozen=True):
    board_id: str
    zone: Zone


class ZoneUpdated(Event, tag="canvas.ZoneUpdated", frozen=True):
    """The zone after the change (all of it); its pinned cards move with it."""

    board_id: str
    zone: Zone


class ZoneDeleted(Event, tag="canvas.ZoneDeleted", frozen=True):
    """Follows a ``CardUnpinned`` or ``CardRemoved`` for each card that was pinned to it."""

    board_id: str
    zone_id: str
    cards: CardsOnZoneDelete


class NoteAdded(Event, tag="canvas.NoteAdded", frozen=True):
    board_id: str
    note: Note


class NoteUpdated(Event, tag="canvas.NoteUpdated", frozen=True):
    board_id: str
    note: Note


class NoteDeleted(Event, tag="canvas.NoteDeleted", frozen=True):
    board_id: str
    note_id: str


class CardMoved(Event, tag="canvas.CardMoved", frozen=True):
    """A card placed or moved (``placed``: it was not on the board). With ``zone_id`` the card
    is pinned to that zone and ``x``/``y`` are relative to the zone's top-left."""

    board_id: str
    worktree_id: str
    x: float
    y: float
    width: float
    height: float
    zone_id: str | None = None
    placed: bool = False


class CardUnpinned(Event, tag="canvas.CardUnpinned", frozen=True):
    """The card stays where it is, in board coordinates ``x``/``y``."""

    board_id: str
    worktree_id: str
    zone_id: str
    x: float
    y: float


class CardRemoved(Event, tag="canvas.CardRemoved", frozen=True):
    board_id: str
    worktree_id: str


class ZoneTriggerRequested(Event, tag="canvas.ZoneTriggerRequested", frozen=True):
    """A card entered a zone with a trigger (a zone other than its previous one). The canvas
    service renders the template and records what follows: fired, offered or failed."""

    board_id: str
    trigger_id: str
    zone_id: str
    worktree_id: str


class ZoneTriggerOffered(Event, tag="canvas.ZoneTriggerOffered", frozen=True):
    """``show_picker``: the rendered prompt waits for the user's choice (``offered_to``: who
    dropped the card)."""

    board_id: str
    trigger_id: str
    zone_id: str
    worktree_id: str
    prompt: str
    settings: AgentSettings
    offered_to: str


class ZoneTriggerFired(Event, tag="canvas.ZoneTriggerFired", frozen=True):
    """What the sessions service carries out: a new session in the worktree with ``prompt``
    (``session_id`` is the new session's id), or a prompt, fork or spawn on ``session_id``."""

    board_id: str
    trigger_id: str
    zone_id: str
    worktree_id: str
    action: TriggerAction
    prompt: str
    settings: AgentSettings
    session_id: str
    title: str = ""


class ZoneTriggerFailed(Event, tag="canvas.ZoneTriggerFailed", frozen=True):
    board_id: str
    trigger_id: str
    zone_id: str
    worktree_id: str
    code: str
    message: str


class ZoneTriggerDismissed(Event, tag="canvas.ZoneTriggerDismissed", frozen=True):
    board_id: str
    trigger_id: str


class CommentAdded(Event, tag="canvas.CommentAdded", frozen=True):
    board_id: str
    comment_id: str
    content: str
    anchor: Anchor
    parent_id: str | None = None
    mentions: list[str] = msgspec.field(default_factory=list)
    author: str = ""


class CommentEdited(Event, tag="canvas.CommentEdited", frozen=True):
    board_id: str
    comment_id: str
    content: str
    mentions: list[str]


class CommentMoved(Event, tag="canvas.CommentMoved", frozen=True):
    board_id: str
    comment_id: str
    anchor: Anchor


class CommentResolved(Event, tag="canvas.CommentResolved", frozen=True):
    board_id: str
    comment_id: str


class CommentReopened(Event, tag="canvas.CommentReopened", frozen=True):
    board_id: str
    comment_id: str


class CommentDeleted(Event, tag="canvas.CommentDeleted", frozen=True):
    """A thread's first comment takes its replies with it."""

    board_id: str
    comment_id: str


class ReactionToggled(Event, tag="canvas.ReactionToggled", frozen=True):
    board_id: str
    comment_id: str
    user: str
    emoji: str
    on: bool


# --- ephemeral (core NATS, never stored) ------------------------------------------------------


class Presence(msgspec.Struct, frozen=True, kw_only=True):
    """One viewer's presence on a board, published on ``canvas.live.<board_id>`` by the gateway
    that holds the viewer's socket: ``cursor`` (throttled), ``drag`` (a card's intermediate
    position; the drop is a ``MoveCard``), ``here`` (joined, or still here: sent every 30 s so
    every gateway's facepile converges) and ``left``."""

    kind: Literal["cursor", "drag", "here", "left"]
    board_id: str
    connection: str
    user: str
    name: str
    emoji: str = ""
    x: float | None = None
    y: float | None = None
    worktree_id: str | None = None
    at: float = 0.0  # seconds since the epoch, on the publishing gateway


CLASSES: tuple[type[Event] | type[Command], ...] = (
    CreateBoard,
    RenameBoard,
    UpdateBoard,
    DeleteBoard,
    AddZone,
    UpdateZone,
    DeleteZone,
    AddNote,
    UpdateNote,
    DeleteNote,
    MoveCard,
    UnpinCard,
    RemoveCard,
    ChooseZoneTrigger,
    DismissZoneTrigger,
    AddComment,
    EditComment,
    MoveComment,
    ResolveComment,
    DeleteComment,
    ToggleReaction,
    BoardCreated,
    BoardRenamed,
    BoardUpdated,
    BoardDeleted,
    ZoneAdded,
    ZoneUpdated,
    ZoneDeleted,
    NoteAdded,
    NoteUpdated,
    NoteDeleted,
    CardMoved,
    CardUnpinned,
    CardRemoved,
    ZoneTriggerRequested,
    ZoneTriggerOffered,
    ZoneTriggerFired,
    ZoneTriggerFailed,
    ZoneTriggerDismissed,
    CommentAdded,
    CommentEdited,
    CommentMoved,
    CommentResolved,
    CommentReopened,
    CommentDeleted,
    ReactionToggled,
)


def register_upcasters(registry: Registry) -> None:
    """No older versions yet."""
