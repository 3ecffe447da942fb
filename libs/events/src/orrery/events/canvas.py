"""Canvas context: boards (more arrives with the canvas issue: zones, cards, comments)."""

from __future__ import annotations

from typing import ClassVar

from orrery.events.base import Command, Event
from orrery.events.registry import Registry


class CreateBoard(Command, tag="canvas.CreateBoard", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    name: str
    slug: str


class RenameBoard(Command, tag="canvas.RenameBoard", frozen=True):
    CONTEXT: ClassVar[str] = "canvas"
    board_id: str
    name: str


class BoardCreated(Event, tag="canvas.BoardCreated", frozen=True):
    board_id: str
    name: str
    slug: str


class BoardRenamed(Event, tag="canvas.BoardRenamed", frozen=True):
    board_id: str
    name: str


CLASSES: tuple[type[Event] | type[Command], ...] = (
    CreateBoard,
    RenameBoard,
    BoardCreated,
    BoardRenamed,
)


def register_upcasters(registry: Registry) -> None:
    """No older versions yet."""
