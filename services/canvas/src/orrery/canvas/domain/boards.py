"""The Board aggregate: a board and everything on it, as pure ``evolve`` and ``decide``
functions.

Rules decided here, in one place:
- a card dropped with its centre inside a zone is pinned to the topmost such zone (the zone added
  last), its position then relative to the zone; a zone trigger is requested only when that zone
  differs from the card's zone before the drop, so moving inside a zone never fires again;
- two drops of the same card are ordered by the board's log: each is decided on the state the
  one before left, so every client ends with the same position and a zone entered twice fires
  once;
- a zone with pinned cards is deleted only with an explicit choice (unpin or remove them);
- a locked zone keeps its place, size and existence until unlocked;
- a comment thread is two levels (replies take the thread's anchor); reactions toggle per user
  and emoji; only a comment's author edits or deletes it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import msgspec
from orrery.events import Command, Event
from orrery.events.canvas import (
    AddComment,
    AddNote,
    AddZone,
    Anchor,
    BoardCreated,
    BoardDeleted,
    BoardRenamed,
    BoardUpdated,
    CardMoved,
    CardRemoved,
    CardUnpinned,
    ChooseZoneTrigger,
    CommentAdded,
    CommentDeleted,
    CommentEdited,
    CommentMoved,
    CommentReopened,
    CommentResolved,
    CreateBoard,
    DeleteBoard,
    DeleteComment,
    DeleteNote,
    DeleteZone,
    DismissZoneTrigger,
    EditComment,
    MoveCard,
    MoveComment,
    Note,
    NoteAdded,
    NoteDeleted,
    NoteUpdated,
    ReactionToggled,
    RemoveCard,
    RenameBoard,
    ResolveComment,
    ToggleReaction,
    UnpinCard,
    UpdateBoard,
    UpdateNote,
    UpdateZone,
    Zone,
    ZoneAdded,
    ZoneDeleted,
    ZoneTrigger,
    ZoneTriggerDismissed,
    ZoneTriggerFailed,
    ZoneTriggerFired,
    ZoneTriggerOffered,
    ZoneTriggerRequested,
    ZoneUpdated,
)
from orrery.events.errors import Rejection
from orrery.events.sessions import AgentSettings
from orrery.runtime.decider import Aggregate, Deps
from orrery.templating import TemplateError, validate

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
COLOUR = re.compile(r"^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$")
ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MAX_NAME = 200
MAX_TEXT = 20_000
MAX_PROMPT = 100_000
MAX_CONTEXT_BYTES = 64 * 1024
MAX_COORD = 10_000_000.0
MAX_SIZE = 100_000.0
MAX_MENTIONS = 50
MAX_EMOJI = 32
CARD_WIDTH, CARD_HEIGHT = 400.0, 240.0
AGENTS = frozenset({"builtin", "claude-code", "codex", "gemini", "opencode"})


# --- state -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    worktree_id: str
    x: float  # relative to the zone's top-left when zone_id is set
    y: float
    width: float
    height: float
    zone_id: str | None = None


@dataclass(frozen=True)
class Comment:
    comment_id: str
    author: str
    anchor: Anchor
    parent_id: str | None
    resolved: bool = False
    deleted: bool = False
    reactions: frozenset[tuple[str, str]] = frozenset()  # (user, emoji)


@dataclass(frozen=True)
class Pending:
    """A trigger requested and not yet fired, failed or dismissed."""

    zone_id: str
    worktree_id: str
    offered: ZoneTriggerOffered | None = None


@dataclass(frozen=True)
class Board:
    exists: bool = False
    deleted: bool = False
    name: str = ""
    slug: str = ""
    icon: str = ""
    color: str | None = None
    background_color: str | None = None
    description: str = ""
    context: Mapping[str, Any] = field(default_factory=dict)
    zones: Mapping[str, Zone] = field(default_factory=dict)  # in z-order: last is on top
    notes: Mapping[str, Note] = field(default_factory=dict)
    cards: Mapping[str, Card] = field(default_factory=dict)
    comments: Mapping[str, Comment] = field(default_factory=dict)
    pending: Mapping[str, Pending] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.exists and not self.deleted


def _with(mapping: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**mapping, key: value}


def _without(mapping: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


def evolve(state: Board, event: Event) -> Board:  # noqa: PLR0911, PLR0912 - one case per event
    match event:
        case BoardCreated():
            return Board(
                exists=True,
                name=event.name,
                slug=event.slug,
                icon=event.icon,
                color=event.color,
                background_color=event.background_color,
                description=event.description,
                context=event.context,
            )
        case BoardRenamed(name=name):
            return replace(state, name=name)
        case BoardUpdated():
            return replace(
                state,
                name=event.name,
                icon=event.icon,
                color=event.color,
                background_color=event.background_color,
                description=event.description,
                context=event.context,
            )
        case BoardDeleted():
            return replace(state, deleted=True)
        case ZoneAdded(zone=zone) | ZoneUpdated(zone=zone):
            return replace(state, zones=_with(state.zones, zone.zone_id, zone))
        case ZoneDeleted(zone_id=zone_id):
            return replace(state, zones=_without(state.zones, zone_id))
        case NoteAdded(note=note) | NoteUpdated(note=note):
            return replace(state, notes=_with(state.notes, note.note_id, note))
        case NoteDeleted(note_id=note_id):
            return replace(state, notes=_without(state.notes, note_id))
        case CardMoved():
            card = Card(
                event.worktree_id, event.x, event.y, event.width, event.height, event.zone_id
            )
            return replace(state, cards=_with(state.cards, event.worktree_id, card))
        case CardUnpinned(worktree_id=wid, x=x, y=y):
            unpinned = replace(state.cards[wid], x=x, y=y, zone_id=None)
            return replace(state, cards=_with(state.cards, wid, unpinned))
        case CardRemoved(worktree_id=wid):
            return replace(state, cards=_without(state.cards, wid))
        case ZoneTriggerRequested():
            pending = Pending(event.zone_id, event.worktree_id)
            return replace(state, pending=_with(state.pending, event.trigger_id, pending))
        case ZoneTriggerOffered():
            offer = Pending(event.zone_id, event.worktree_id, event)
            return replace(state, pending=_with(state.pending, event.trigger_id, offer))
        case ZoneTriggerFired() | ZoneTriggerFailed() | ZoneTriggerDismissed():
            return replace(state, pending=_without(state.pending, event.trigger_id))
        case CommentAdded() | CommentEdited() | CommentMoved() | CommentResolved():
            return _evolve_comment(state, event)
        case CommentReopened() | CommentDeleted() | ReactionToggled():
            return _evolve_comment(state, event)
    return state


def _evolve_comment(state: Board, event: Event) -> Board:
    comments = state.comments
    match event:
        case CommentAdded():
            anchor = event.anchor
            if event.parent_id is not None and event.parent_id in comments:
                anchor = comments[event.parent_id].anchor
            added = Comment(event.comment_id, event.author, anchor, event.parent_id)
            return replace(state, comments=_with(comments, event.comment_id, added))
        case CommentMoved(comment_id=cid, anchor=anchor):
            moved = {
                k: replace(c, anchor=anchor) if cid in (k, c.parent_id) else c
                for k, c in comments.items()
            }
            return replace(state, comments=moved)
        case CommentResolved(comment_id=cid) | CommentReopened(comment_id=cid):
            resolved = isinstance(event, CommentResolved)
            return replace(
                state, comments=_with(comments, cid, replace(comments[cid], resolved=resolved))
            )
        case CommentDeleted(comment_id=cid):
            gone = {
                k: replace(c, deleted=True) if cid in (k, c.parent_id) else c
                for k, c in comments.items()
            }
            return replace(state, comments=gone)
        case ReactionToggled(comment_id=cid, user=user, emoji=emoji, on=on):
            comment = comments[cid]
            key = (user, emoji)
            reactions = comment.reactions | {key} if on else comment.reactions - {key}
            return replace(
                state, comments=_with(comments, cid, replace(comment, reactions=reactions))
            )
    return state  # CommentEdited changes nothing a decision reads


# --- validation ------------------------------------------------------------------------------


def _name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME:
        raise Rejection("board.invalid_name", f"a board name needs 1 to {MAX_NAME} characters")
    return cleaned


def _colour(value: str | None, what: str) -> None:
    if value is not None and not COLOUR.fullmatch(value):
        raise Rejection(
            "canvas.invalid_colour", f"{what} must be a colour like #1f6feb (or #1f6feb80)"
        )


def _context(value: Mapping[str, Any]) -> None:
    if len(msgspec.json.encode(value)) > MAX_CONTEXT_BYTES:
        raise Rejection("board.invalid_context", "a board's context is at most 64 KiB of JSON")


def _icon(value: str) -> None:
    if len(value) > MAX_EMOJI:
        raise Rejection("board.invalid_icon", f"an icon is an emoji (at most {MAX_EMOJI} chars)")


def _coord(value: float, what: str) -> float:
    if not math.isfinite(value) or abs(value) > MAX_COORD:
        raise Rejection("canvas.invalid_position", f"{what} must be a number within ±1e7")
    return value


def _size(value: float, what: str, minimum: float = 1.0) -> float:
    if not math.isfinite(value) or not minimum <= value <= MAX_SIZE:
        raise Rejection("canvas.invalid_size", f"{what} must be between {minimum:g} and 100000")
    return value


def _text(value: str, what: str, code: str, *, empty: bool = False) -> str:
    if (not empty and not value.strip()) or len(value) > MAX_TEXT:
        need = "at most" if empty else "1 to"
        raise Rejection(code, f"{what} needs {need} {MAX_TEXT} characters")
    return value


def _id(value: str, what: str) -> str:
    if not ID.fullmatch(value):
        raise Rejection("canvas.invalid_id", f"{what} must be letters, digits, - and _")
    return value


def _settings(settings: AgentSettings) -> None:
    if settings.agent not in AGENTS:
        raise Rejection(
            "zone.invalid_trigger",
            f"unknown agent {settings.agent!r}; one of {', '.join(sorted(AGENTS))}",
        )


def _trigger(trigger: ZoneTrigger | None) -> None:
    if trigger is None:
        return
    if not trigger.template.strip():
        raise Rejection("zone.invalid_trigger", "a trigger needs a template")
    try:
        validate(trigger.template)
    except TemplateError as exc:
        raise Rejection(
            "zone.invalid_trigger",
            f"the trigger's template does not compile: {exc.message}",
            {"line": exc.line, "template_code": exc.code},
        ) from None
    _settings(trigger.settings)


def _zone(zone: Zone) -> Zone:
    label = zone.label.strip()
    if len(label) > MAX_NAME:
        raise Rejection("zone.invalid_label", f"a zone label is at most {MAX_NAME} characters")
    _coord(zone.x, "x")
    _coord(zone.y, "y")
    _size(zone.width, "width", 20)
    _size(zone.height, "height", 20)
    _colour(zone.border_color, "border_color")
    _colour(zone.background_color, "background_color")
    _trigger(zone.trigger)
    return msgspec.structs.replace(zone, label=label)


def _note(note: Note) -> Note:
    _coord(note.x, "x")
    _coord(note.y, "y")
    if note.kind == "markdown":
        _size(note.width, "a markdown note's width", 300)
        if note.width > 800:
            raise Rejection("canvas.invalid_size", "a markdown note is 300 to 800 wide")
    else:
        _size(note.width, "width")
    if note.height is not None:
        _size(note.height, "height")
    _text(note.content, "a note", "note.invalid_content", empty=True)
    if not 6 <= note.font_size <= 200:
        raise Rejection("note.invalid_font_size", "a font size is 6 to 200")
    _colour(note.color, "color")
    _colour(note.background_color, "background_color")
    return note


def _live(state: Board, command: Command) -> None:
    if not state.live:
        raise Rejection("board.not_found", f"no board {getattr(command, 'board_id', '')}")


def _zone_of(state: Board, zone_id: str) -> Zone:
    zone = state.zones.get(zone_id)
    if zone is None:
        raise Rejection("zone.not_found", f"no zone {zone_id} on this board")
    return zone


def _card_of(state: Board, worktree_id: str) -> Card:
    card = state.cards.get(worktree_id)
    if card is None:
        raise Rejection("card.not_found", f"worktree {worktree_id} is not on this board")
    return card


def _comment_of(state: Board, comment_id: str) -> Comment:
    comment = state.comments.get(comment_id)
    if comment is None or comment.deleted:
        raise Rejection("comment.not_found", f"no comment {comment_id} on this board")
    return comment


def absolute(state: Board, card: Card) -> tuple[float, float]:
    """A card's board coordinates (its stored ones are relative when pinned)."""
    zone = state.zones.get(card.zone_id) if card.zone_id else None
    if zone is None:
        return card.x, card.y
    return zone.x + card.x, zone.y + card.y


def zone_at(state: Board, x: float, y: float) -> Zone | None:
    """The topmost zone containing the point."""
    for zone in reversed(list(state.zones.values())):
        if zone.x <= x <= zone.x + zone.width and zone.y <= y <= zone.y + zone.height:
            return zone
    return None


# --- decisions: the board --------------------------------------------------------------------


def decide_create(command: CreateBoard, state: Board, deps: Deps) -> Sequence[Event]:
    if state.exists:
        raise Rejection("board.exists", f"board {command.board_id} already exists")
    if not SLUG.fullmatch(command.slug):
        raise Rejection(
            "board.invalid_slug",
            "a slug is 1 to 64 lowercase letters, digits and dashes,"
            " starting with a letter or digit",
            {"slug": command.slug},
        )
    name = _name(command.name)
    _icon(command.icon)
    _colour(command.color, "color")
    _colour(command.background_color, "background_color")
    _text(command.description, "a description", "board.invalid_description", empty=True)
    _context(command.context)
    return [
        BoardCreated(
            board_id=command.board_id,
            name=name,
            slug=command.slug,
            icon=command.icon,
            color=command.color,
            background_color=command.background_color,
            description=command.description,
            context=command.context,
        )
    ]


def decide_rename(command: RenameBoard, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    name = _name(command.name)
    if name == state.name:
        return []
    return [BoardRenamed(board_id=command.board_id, name=name)]


def decide_update(command: UpdateBoard, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)

    def keep(value: Any, current: Any) -> Any:
        return current if value is None else value

    name = _name(command.name) if command.name is not None else state.name
    icon, description = keep(command.icon, state.icon), keep(command.description, state.description)
    color = keep(command.color, state.color) or None
    background = keep(command.background_color, state.background_color) or None
    context = keep(command.context, state.context)
    _icon(icon)
    _colour(color, "color")
    _colour(background, "background_color")
    _text(description, "a description", "board.invalid_description", empty=True)
    _context(context)
    after = (name, icon, color, background, description, dict(context))
    before = (
        state.name,
        state.icon,
        state.color,
        state.background_color,
        state.description,
        dict(state.context),
    )
    if after == before:
        return []
    return [
        BoardUpdated(
            board_id=command.board_id,
            name=name,
            icon=icon,
            color=color,
            background_color=background,
            description=description,
            context=dict(context),
        )
    ]


def decide_delete(command: DeleteBoard, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    return [BoardDeleted(board_id=command.board_id, slug=state.slug)]


# --- decisions: zones and notes ----------------------------------------------------------------


def decide_add_zone(command: AddZone, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    _id(command.zone.zone_id, "a zone id")
    if command.zone.zone_id in state.zones:
        raise Rejection("zone.exists", f"zone {command.zone.zone_id} already exists")
    return [ZoneAdded(board_id=command.board_id, zone=_zone(command.zone))]


_GEOMETRY = ("x", "y", "width", "height")


def decide_update_zone(command: UpdateZone, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    zone = _zone_of(state, command.zone_id)
    moves = any(
        getattr(command, f) is not None and getattr(command, f) != getattr(zone, f)
        for f in _GEOMETRY
    )
    if zone.locked and command.locked is not False and moves:
        raise Rejection("zone.locked", f"zone {zone.label or zone.zone_id} is locked: unlock it")
    changes: dict[str, Any] = {
        f: getattr(command, f)
        for f in (*_GEOMETRY, "label", "border_color", "background_color", "locked", "trigger")
        if getattr(command, f) is not None
    }
    if command.clear_trigger:
        changes["trigger"] = None
    after = _zone(msgspec.structs.replace(zone, **changes))
    if after == zone:
        return []
    return [ZoneUpdated(board_id=command.board_id, zone=after)]


def decide_delete_zone(command: DeleteZone, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    zone = _zone_of(state, command.zone_id)
    if zone.locked:
        raise Rejection("zone.locked", f"zone {zone.label or zone.zone_id} is locked: unlock it")
    pinned = [c for c in state.cards.values() if c.zone_id == zone.zone_id]
    if pinned and command.cards == "refuse":
        raise Rejection(
            "zone.has_cards",
            f"{len(pinned)} card(s) are pinned to this zone: unpin them (keep the cards)"
            " or remove them from the board",
            {"worktrees": [c.worktree_id for c in pinned], "choices": ["unpin", "remove"]},
        )
    events: list[Event] = []
    for card in pinned:
        if command.cards == "remove":
            events.append(CardRemoved(board_id=command.board_id, worktree_id=card.worktree_id))
        else:
            x, y = absolute(state, card)
            events.append(
                CardUnpinned(
                    board_id=command.board_id,
                    worktree_id=card.worktree_id,
                    zone_id=zone.zone_id,
                    x=x,
                    y=y,
                )
            )
    events.append(ZoneDeleted(board_id=command.board_id, zone_id=zone.zone_id, cards=command.cards))
    return events


def decide_add_note(command: AddNote, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    _id(command.note.note_id, "a note id")
    if command.note.note_id in state.notes:
        raise Rejection("note.exists", f"note {command.note.note_id} already exists")
    return [NoteAdded(board_id=command.board_id, note=_note(command.note))]


def decide_update_note(command: UpdateNote, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    note = state.notes.get(command.note_id)
    if note is None:
        raise Rejection("note.not_found", f"no note {command.note_id} on this board")
    changes = {
        f: getattr(command, f)
        for f in (*_GEOMETRY, "content", "font_size", "color", "background_color")
        if getattr(command, f) is not None
    }
    after = _note(msgspec.structs.replace(note, **changes))
    if after == note:
        return []
    return [NoteUpdated(board_id=command.board_id, note=after)]


def decide_delete_note(command: DeleteNote, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    if command.note_id not in state.notes:
        raise Rejection("note.not_found", f"no note {command.note_id} on this board")
    return [NoteDeleted(board_id=command.board_id, note_id=command.note_id)]


# --- decisions: cards and triggers ----------------------------------------------------------


def decide_move_card(command: MoveCard, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    _id(command.worktree_id, "a worktree id")
    x, y = _coord(command.x, "x"), _coord(command.y, "y")
    before = state.cards.get(command.worktree_id)
    width = _size(command.width or (before.width if before else CARD_WIDTH), "width")
    height = _size(command.height or (before.height if before else CARD_HEIGHT), "height")
    zone = zone_at(state, x + width / 2, y + height / 2)
    zone_id = zone.zone_id if zone is not None else None
    rx, ry = (x - zone.x, y - zone.y) if zone is not None else (x, y)
    after = Card(command.worktree_id, rx, ry, width, height, zone_id)
    if after == before:
        return []
    events: list[Event] = [
        CardMoved(
            board_id=command.board_id,
            worktree_id=command.worktree_id,
            x=rx,
            y=ry,
            width=width,
            height=height,
            zone_id=zone_id,
            placed=before is None,
        )
    ]
    previous = before.zone_id if before is not None else None
    if zone is not None and zone.trigger is not None and zone_id != previous:
        events.append(
            ZoneTriggerRequested(
                board_id=command.board_id,
                trigger_id=deps.ids.new(),
                zone_id=zone.zone_id,
                worktree_id=command.worktree_id,
            )
        )
    return events


def decide_unpin_card(command: UnpinCard, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    card = _card_of(state, command.worktree_id)
    if card.zone_id is None:
        return []
    x, y = absolute(state, card)
    return [
        CardUnpinned(
            board_id=command.board_id,
            worktree_id=card.worktree_id,
            zone_id=card.zone_id,
            x=x,
            y=y,
        )
    ]


def decide_remove_card(command: RemoveCard, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    _card_of(state, command.worktree_id)
    return [CardRemoved(board_id=command.board_id, worktree_id=command.worktree_id)]


def _pending(state: Board, trigger_id: str) -> Pending:
    pending = state.pending.get(trigger_id)
    if pending is None:
        raise Rejection("trigger.not_pending", f"trigger {trigger_id} is not waiting for a choice")
    return pending


def decide_choose_trigger(command: ChooseZoneTrigger, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    offer = _pending(state, command.trigger_id).offered
    if offer is None:
        raise Rejection("trigger.not_ready", "the trigger's prompt is still being rendered")
    if command.action == "new_session":
        session_id = deps.ids.new()
    elif command.session_id is None:
        raise Rejection("trigger.session_required", f"{command.action} needs a session_id")
    else:
        session_id = _id(command.session_id, "a session id")
    prompt = command.prompt if command.prompt is not None else offer.prompt
    if not prompt.strip() or len(prompt) > MAX_PROMPT:
        raise Rejection("trigger.invalid_prompt", f"a prompt needs 1 to {MAX_PROMPT} characters")
    settings = command.settings or offer.settings
    _settings(settings)
    zone = state.zones.get(offer.zone_id)
    return [
        ZoneTriggerFired(
            board_id=command.board_id,
            trigger_id=command.trigger_id,
            zone_id=offer.zone_id,
            worktree_id=offer.worktree_id,
            action=command.action,
            prompt=prompt,
            settings=settings,
            session_id=session_id,
            title=session_title(zone.label if zone else ""),
        )
    ]


def decide_dismiss_trigger(
    command: DismissZoneTrigger, state: Board, deps: Deps
) -> Sequence[Event]:
    _live(state, command)
    _pending(state, command.trigger_id)
    return [ZoneTriggerDismissed(board_id=command.board_id, trigger_id=command.trigger_id)]


def session_title(label: str) -> str:
    return f'Session from zone "{label}"' if label else "Session from a zone"


class RecordTrigger(Command, tag="canvas.internal.RecordTrigger", frozen=True):
    """Internal (never on the wire): what the canvas reactor made of a requested trigger."""

    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    trigger_id: str
    outcome: ZoneTriggerFired | ZoneTriggerOffered | ZoneTriggerFailed


def decide_record_trigger(command: RecordTrigger, state: Board, deps: Deps) -> Sequence[Event]:
    pending = state.pending.get(command.trigger_id)
    if pending is None or pending.offered is not None:
        return []  # already recorded (a redelivery), or dismissed meanwhile
    return [command.outcome]


# --- decisions: comments ---------------------------------------------------------------------


def _anchor(state: Board, anchor: Anchor) -> Anchor:
    spatial = anchor.x is not None or anchor.y is not None
    if spatial and (anchor.x is None or anchor.y is None):
        raise Rejection("comment.invalid_anchor", "a spatial comment needs both x and y")
    if anchor.x is not None and anchor.y is not None:
        _coord(anchor.x, "x")
        _coord(anchor.y, "y")
    if anchor.kind == "board":
        if anchor.target_id is not None:
            raise Rejection("comment.invalid_anchor", "a board comment names no target")
        return anchor
    if anchor.target_id is None:
        raise Rejection("comment.invalid_anchor", f"a {anchor.kind} comment needs a target_id")
    _id(anchor.target_id, "a comment's target")
    if anchor.kind == "zone":
        _zone_of(state, anchor.target_id)
    if anchor.kind in ("task", "message") and spatial:
        raise Rejection(
            "comment.invalid_anchor", f"a {anchor.kind} comment is attached, not placed"
        )
    return anchor


def _mentions(mentions: Sequence[str]) -> list[str]:
    if len(mentions) > MAX_MENTIONS or any(not ID.fullmatch(m) for m in mentions):
        raise Rejection("comment.invalid_mentions", f"at most {MAX_MENTIONS} user ids")
    return list(dict.fromkeys(mentions))


def decide_add_comment(command: AddComment, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    _id(command.comment_id, "a comment id")
    if command.comment_id in state.comments:
        raise Rejection("comment.exists", f"comment {command.comment_id} already exists")
    content = _text(command.content, "a comment", "comment.invalid_content")
    anchor = command.anchor
    if command.parent_id is not None:
        parent = _comment_of(state, command.parent_id)
        if parent.parent_id is not None:
            raise Rejection("comment.not_a_thread", "reply to the thread's first comment")
        anchor = parent.anchor
    else:
        anchor = _anchor(state, anchor)
    return [
        CommentAdded(
            board_id=command.board_id,
            comment_id=command.comment_id,
            content=content,
            anchor=anchor,
            parent_id=command.parent_id,
            mentions=_mentions(command.mentions),
            author=deps.actor,
        )
    ]


def _authored(state: Board, comment_id: str, actor: str, verb: str) -> Comment:
    comment = _comment_of(state, comment_id)
    if comment.author and comment.author != actor:
        raise Rejection("comment.not_author", f"only its author can {verb} a comment")
    return comment


def decide_edit_comment(command: EditComment, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    _authored(state, command.comment_id, deps.actor, "edit")
    return [
        CommentEdited(
            board_id=command.board_id,
            comment_id=command.comment_id,
            content=_text(command.content, "a comment", "comment.invalid_content"),
            mentions=_mentions(command.mentions or []),
        )
    ]


def decide_move_comment(command: MoveComment, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    comment = _comment_of(state, command.comment_id)
    if comment.parent_id is not None:
        raise Rejection("comment.not_a_thread", "a reply moves with its thread")
    anchor = _anchor(state, command.anchor)
    if anchor == comment.anchor:
        return []
    return [CommentMoved(board_id=command.board_id, comment_id=command.comment_id, anchor=anchor)]


def decide_resolve_comment(command: ResolveComment, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    comment = _comment_of(state, command.comment_id)
    if comment.parent_id is not None:
        raise Rejection("comment.not_a_thread", "resolve or reopen the thread's first comment")
    if comment.resolved == command.resolved:
        return []
    kind = CommentResolved if command.resolved else CommentReopened
    return [kind(board_id=command.board_id, comment_id=command.comment_id)]


def decide_delete_comment(command: DeleteComment, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    _authored(state, command.comment_id, deps.actor, "delete")
    return [CommentDeleted(board_id=command.board_id, comment_id=command.comment_id)]


def decide_toggle_reaction(command: ToggleReaction, state: Board, deps: Deps) -> Sequence[Event]:
    _live(state, command)
    comment = _comment_of(state, command.comment_id)
    emoji = command.emoji.strip()
    if not emoji or len(emoji) > MAX_EMOJI or any(ch.isspace() for ch in emoji):
        raise Rejection("comment.invalid_emoji", "a reaction is one emoji (or a :short_code:)")
    on = (deps.actor, emoji) not in comment.reactions
    return [
        ReactionToggled(
            board_id=command.board_id,
            comment_id=command.comment_id,
            user=deps.actor,
            emoji=emoji,
            on=on,
        )
    ]


BOARD = Aggregate[Board](kind="board", initial=Board, evolve=evolve)
