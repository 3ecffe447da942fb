"""The Board aggregate: pure ``evolve`` and ``decide`` functions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from orrery.events import Event
from orrery.events.canvas import BoardCreated, BoardRenamed, CreateBoard, RenameBoard
from orrery.events.errors import Rejection
from orrery.runtime.decider import Aggregate, Deps

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_NAME = 200


@dataclass(frozen=True)
class Board:
    exists: bool = False
    name: str = ""
    slug: str = ""


def evolve(state: Board, event: Event) -> Board:
    match event:
        case BoardCreated(name=name, slug=slug):
            return Board(exists=True, name=name, slug=slug)
        case BoardRenamed(name=name):
            return replace(state, name=name)
    return state


def _valid_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME:
        raise Rejection("board.invalid_name", f"a board name needs 1 to {MAX_NAME} characters")
    return cleaned


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
    name = _valid_name(command.name)
    return [BoardCreated(board_id=command.board_id, name=name, slug=command.slug)]


def decide_rename(command: RenameBoard, state: Board, deps: Deps) -> Sequence[Event]:
    if not state.exists:
        raise Rejection("board.not_found", f"no board {command.board_id}")
    name = _valid_name(command.name)
    if name == state.name:
        return []
    return [BoardRenamed(board_id=command.board_id, name=name)]


BOARD = Aggregate[Board](kind="board", initial=Board, evolve=evolve)
