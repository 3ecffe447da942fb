"""Given / when / then on the Board aggregate's pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from orrery.canvas.domain.boards import Board, decide_create, decide_rename, evolve
from orrery.events.canvas import BoardCreated, BoardRenamed, CreateBoard, RenameBoard
from orrery.events.errors import Rejection
from orrery.runtime.clock import UUID7
from orrery.runtime.decider import Deps


class Clock:
    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)


DEPS = Deps(clock=Clock(), ids=UUID7(), actor="ada")
EXISTING = Board(exists=True, name="Main", slug="main")


def test_create_on_a_fresh_board() -> None:
    events = decide_create(
        CreateBoard(command_id="c", board_id="b", name="Main", slug="main"), Board(), DEPS
    )
    assert events == [BoardCreated(board_id="b", name="Main", slug="main")]


@pytest.mark.parametrize(
    ("state", "name", "slug", "code"),
    [
        (EXISTING, "Main", "main", "board.exists"),
        (Board(), "", "main", "board.invalid_name"),
        (Board(), "x" * 201, "main", "board.invalid_name"),
        (Board(), "Main", "Main Board", "board.invalid_slug"),
        (Board(), "Main", "-lead", "board.invalid_slug"),
    ],
)
def test_create_refusals(state: Board, name: str, slug: str, code: str) -> None:
    with pytest.raises(Rejection) as caught:
        decide_create(CreateBoard(command_id="c", board_id="b", name=name, slug=slug), state, DEPS)
    assert caught.value.code == code


def test_rename_unknown_board_is_refused_and_same_name_is_a_no_op() -> None:
    with pytest.raises(Rejection, match="no board"):
        decide_rename(RenameBoard(command_id="c", board_id="b", name="x"), Board(), DEPS)
    assert (
        decide_rename(RenameBoard(command_id="c", board_id="b", name="Main"), EXISTING, DEPS) == []
    )


@given(st.lists(st.text(min_size=1, max_size=20).filter(str.strip), max_size=10))
def test_evolve_keeps_the_last_name(names: list[str]) -> None:
    state = evolve(Board(), BoardCreated(board_id="b", name="first", slug="s"))
    for name in names:
        state = evolve(state, BoardRenamed(board_id="b", name=name))
    assert state == Board(exists=True, name=names[-1] if names else "first", slug="s")
