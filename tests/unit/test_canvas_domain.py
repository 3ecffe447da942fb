"""Given / when / then on the board aggregate: zones, cards and pinning, zone triggers, notes and
comments, through the canvas service's own handler table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from orrery.canvas.domain.boards import (
    BOARD,
    Board,
    RecordTrigger,
    absolute,
    decide_record_trigger,
)
from orrery.canvas.main import HANDLERS
from orrery.events import Command, Event
from orrery.events import canvas as c
from orrery.events.errors import Rejection
from orrery.events.sessions import AgentSettings
from orrery.runtime.clock import UUID7
from orrery.runtime.decider import Deps


class Clock:
    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)


def deps(actor: str = "ada") -> Deps:
    return Deps(clock=Clock(), ids=UUID7(), actor=actor)


TRIGGER = c.ZoneTrigger(
    template="Review {{ worktree.name }} on {{ board.name }}",
    behavior="always_new",
    settings=AgentSettings(agent="builtin"),
)


def zone(zone_id: str, x: float, y: float, w: float = 1000, h: float = 800, **kw: Any) -> c.Zone:
    return c.Zone(zone_id=zone_id, label=zone_id.upper(), x=x, y=y, width=w, height=h, **kw)


def fold(*events: Event) -> Board:
    state = BOARD.initial()
    for event in events:
        state = BOARD.evolve(state, event)
    return state


CREATED = c.BoardCreated(board_id="b", name="Main", slug="main")
WITH_ZONES = (
    CREATED,
    c.ZoneAdded(board_id="b", zone=zone("review", 0, 0, trigger=TRIGGER)),
    c.ZoneAdded(board_id="b", zone=zone("plain", 2000, 0)),
    c.ZoneAdded(board_id="b", zone=zone("qa", 4000, 0, trigger=TRIGGER)),
)


def run(state: Board, command: Command, actor: str = "ada") -> tuple[Board, Sequence[Event]]:
    events = HANDLERS[type(command)].decide(command, state, deps(actor))
    for event in events:
        state = BOARD.evolve(state, event)
    return state, events


def refused(state: Board, command: Command, actor: str = "ada") -> Rejection:
    with pytest.raises(Rejection) as caught:
        HANDLERS[type(command)].decide(command, state, deps(actor))
    return caught.value


def move(worktree: str, x: float, y: float) -> c.MoveCard:
    return c.MoveCard(command_id="m", board_id="b", worktree_id=worktree, x=x, y=y)


def types(events: Sequence[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


# --- cards, zones and triggers ----------------------------------------------------------------


def test_a_card_dropped_into_a_zone_is_pinned_relative_to_it_and_its_trigger_requested() -> None:
    state, events = run(fold(*WITH_ZONES), move("w1", 100, 150))
    assert types(events) == ["CardMoved", "ZoneTriggerRequested"]
    moved = events[0]
    assert isinstance(moved, c.CardMoved)
    assert (moved.zone_id, moved.x, moved.y, moved.placed) == ("review", 100, 150, True)
    requested = events[1]
    assert isinstance(requested, c.ZoneTriggerRequested)
    assert (requested.zone_id, requested.worktree_id) == ("review", "w1")
    assert requested.trigger_id in state.pending


def test_moving_inside_the_same_zone_never_fires_again_but_entering_another_does() -> None:
    state, _ = run(fold(*WITH_ZONES), move("w1", 100, 150))
    state, events = run(state, move("w1", 300, 400))
    assert types(events) == ["CardMoved"]
    state, events = run(state, move("w1", 2100, 100))  # a zone without a trigger: pinned only
    assert types(events) == ["CardMoved"] and state.cards["w1"].zone_id == "plain"
    state, events = run(state, move("w1", 4100, 100))
    assert types(events) == ["CardMoved", "ZoneTriggerRequested"]
    state, events = run(state, move("w1", 8000, 8000))  # out on the open board: unpinned
    assert state.cards["w1"].zone_id is None and types(events) == ["CardMoved"]
    state, events = run(state, move("w1", 4100, 100))  # back in: a new entry fires again
    assert types(events) == ["CardMoved", "ZoneTriggerRequested"]
    assert run(state, move("w1", 4100, 100))[1] == []  # the same drop twice: nothing


def test_the_card_centre_decides_and_the_topmost_zone_wins() -> None:
    inner = c.ZoneAdded(board_id="b", zone=zone("inner", 100, 100, 600, 600))
    state = fold(*WITH_ZONES, inner)
    # The card's corner is in "review" only, its centre in "inner" too: the later zone is on top.
    state, events = run(state, move("w1", 50, 50))
    assert state.cards["w1"].zone_id == "inner"
    assert (state.cards["w1"].x, state.cards["w1"].y) == (-50, -50)
    assert types(events) == ["CardMoved"]  # "inner" has no trigger


def test_a_pinned_card_moves_with_its_zone() -> None:
    state, _ = run(fold(*WITH_ZONES), move("w1", 100, 150))
    update = c.UpdateZone(command_id="u", board_id="b", zone_id="review", x=500, y=-20)
    state, events = run(state, update)
    assert types(events) == ["ZoneUpdated"]
    assert absolute(state, state.cards["w1"]) == (600, 130)


def test_deleting_a_zone_with_pinned_cards_asks_then_unpins_or_removes() -> None:
    state, _ = run(fold(*WITH_ZONES), move("w1", 100, 150))
    state, _ = run(state, move("w2", 200, 250))
    delete = c.DeleteZone(command_id="d", board_id="b", zone_id="review")
    rejection = refused(state, delete)
    assert rejection.code == "zone.has_cards"
    assert rejection.detail["worktrees"] == ["w1", "w2"]
    moved = c.UpdateZone(command_id="u", board_id="b", zone_id="review", x=10, y=20)
    state, _ = run(state, moved)

    unpinned_state, events = run(state, c.DeleteZone(**{**_fields(delete), "cards": "unpin"}))
    assert types(events) == ["CardUnpinned", "CardUnpinned", "ZoneDeleted"]
    assert unpinned_state.cards["w1"] == unpinned_state.cards["w1"].__class__(
        "w1", 110, 170, 400, 240, None
    )
    assert "review" not in unpinned_state.zones

    removed_state, events = run(state, c.DeleteZone(**{**_fields(delete), "cards": "remove"}))
    assert types(events) == ["CardRemoved", "CardRemoved", "ZoneDeleted"]
    assert removed_state.cards == {}


def _fields(command: Command) -> dict[str, Any]:
    return {f: getattr(command, f) for f in command.__struct_fields__}


def test_a_locked_zone_keeps_its_place_until_unlocked() -> None:
    state = fold(*WITH_ZONES)
    state, _ = run(state, c.UpdateZone(command_id="l", board_id="b", zone_id="plain", locked=True))
    assert refused(
        state, c.UpdateZone(command_id="u", board_id="b", zone_id="plain", x=1)
    ).code == ("zone.locked")
    assert refused(state, c.DeleteZone(command_id="d", board_id="b", zone_id="plain")).code == (
        "zone.locked"
    )
    relabel = c.UpdateZone(command_id="r", board_id="b", zone_id="plain", label="Done")
    assert types(run(state, relabel)[1]) == ["ZoneUpdated"]
    unlock_and_move = c.UpdateZone(command_id="u", board_id="b", zone_id="plain", locked=False, x=1)
    state, _ = run(state, unlock_and_move)
    assert (state.zones["plain"].locked, state.zones["plain"].x) == (False, 1)


@pytest.mark.parametrize(
    ("template", "code"),
    [("{{ worktree.name ", "zone.invalid_trigger"), ("   ", "zone.invalid_trigger")],
)
def test_a_trigger_template_that_does_not_compile_is_refused(template: str, code: str) -> None:
    bad = c.ZoneTrigger(template=template)
    add = c.AddZone(command_id="z", board_id="b", zone=zone("z", 0, 0, trigger=bad))
    assert refused(fold(CREATED), add).code == code


@pytest.mark.parametrize(
    ("zone_kw", "code"),
    [
        ({"width": 0}, "canvas.invalid_size"),
        ({"x": float("nan")}, "canvas.invalid_position"),
        ({"border_color": "red"}, "canvas.invalid_colour"),
    ],
)
def test_bad_zone_geometry_or_colours_are_refused(zone_kw: dict[str, Any], code: str) -> None:
    fields = {"zone_id": "z", "label": "Z", "x": 0.0, "y": 0.0, "width": 10.0, "height": 10.0}
    fields["width"] = 100.0
    fields["height"] = 100.0
    add = c.AddZone(command_id="z", board_id="b", zone=c.Zone(**{**fields, **zone_kw}))
    assert refused(fold(CREATED), add).code == code


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["w1", "w2"]),
            st.sampled_from([100, 2100, 4100, 9000]),
            st.sampled_from([100, 300]),
        ),
        max_size=30,
    )
)
def test_drops_in_any_order_end_deterministically_and_fire_once_per_entry(
    drops: list[tuple[str, int, int]],
) -> None:
    """The log orders concurrent drops; folding them gives the last drop's position and exactly
    one trigger per entry into a triggered zone (a model of the rule, written separately)."""
    state = fold(*WITH_ZONES)
    zone_of = {100: "review", 2100: "plain", 4100: "qa", 9000: None}
    expected_triggers, where = 0, dict[str, str | None]()
    fired = 0
    for worktree, x, y in drops:
        state, events = run(state, move(worktree, x, y))
        fired += sum(isinstance(e, c.ZoneTriggerRequested) for e in events)
        target = zone_of[x]
        if target in ("review", "qa") and (worktree not in where or where[worktree] != target):
            expected_triggers += 1
        where[worktree] = target
    assert fired == expected_triggers
    for worktree, target in where.items():
        assert state.cards[worktree].zone_id == target


# --- the picker --------------------------------------------------------------------------------


def _offered(state: Board, trigger_id: str) -> c.ZoneTriggerOffered:
    return c.ZoneTriggerOffered(
        board_id="b",
        trigger_id=trigger_id,
        zone_id="review",
        worktree_id="w1",
        prompt="Review w1",
        settings=AgentSettings(),
        offered_to="ada",
    )


def test_a_picker_trigger_waits_for_its_offer_then_fires_the_choice_once() -> None:
    state, events = run(fold(*WITH_ZONES), move("w1", 100, 150))
    trigger_id = events[1].trigger_id  # type: ignore[attr-defined]
    choose = c.ChooseZoneTrigger(command_id="ch", board_id="b", trigger_id=trigger_id)
    assert refused(state, choose).code == "trigger.not_ready"

    record = RecordTrigger(
        command_id="r", board_id="b", trigger_id=trigger_id, outcome=_offered(state, trigger_id)
    )
    recorded = decide_record_trigger(record, state, deps())
    state = fold_onto(state, recorded)
    assert decide_record_trigger(record, state, deps()) == []  # a redelivery records nothing

    fork = c.ChooseZoneTrigger(command_id="f", board_id="b", trigger_id=trigger_id, action="fork")
    assert refused(state, fork).code == "trigger.session_required"
    state, events = run(state, choose)
    fired = events[0]
    assert isinstance(fired, c.ZoneTriggerFired)
    assert (fired.action, fired.prompt, fired.title) == (
        "new_session",
        "Review w1",
        'Session from zone "REVIEW"',
    )
    assert refused(state, choose).code == "trigger.not_pending"


def fold_onto(state: Board, events: Sequence[Event]) -> Board:
    for event in events:
        state = BOARD.evolve(state, event)
    return state


# --- comments ----------------------------------------------------------------------------------


def comment(cid: str, **kw: Any) -> c.AddComment:
    return c.AddComment(command_id=cid, board_id="b", comment_id=cid, content="hi", **kw)


def test_threads_are_two_levels_and_replies_follow_their_thread() -> None:
    anchor = c.Anchor(kind="zone", target_id="review", x=10, y=20)
    state, events = run(fold(*WITH_ZONES), comment("c1", anchor=anchor))
    assert events[0].author == "ada"  # type: ignore[attr-defined]
    state, events = run(state, comment("c2", parent_id="c1"), actor="bob")
    assert state.comments["c2"].anchor == anchor
    assert refused(state, comment("c3", parent_id="c2")).code == "comment.not_a_thread"
    resolve = c.ResolveComment(command_id="r", board_id="b", comment_id="c2")
    assert refused(state, resolve).code == "comment.not_a_thread"

    moved = c.Anchor(kind="board", x=1, y=2)
    state, _ = run(
        state, c.MoveComment(command_id="mv", board_id="b", comment_id="c1", anchor=moved)
    )
    assert state.comments["c2"].anchor == moved

    delete = c.DeleteComment(command_id="d", board_id="b", comment_id="c1")
    assert refused(state, delete, actor="bob").code == "comment.not_author"
    state, _ = run(state, delete)
    assert state.comments["c2"].deleted
    assert refused(state, comment("c4", parent_id="c1")).code == "comment.not_found"


def test_reactions_toggle_per_user_and_emoji() -> None:
    state, _ = run(fold(CREATED), comment("c1"))
    react = c.ToggleReaction(command_id="t", board_id="b", comment_id="c1", emoji="👍")
    state, events = run(state, react)
    assert events[0].on  # type: ignore[attr-defined]
    state, events = run(state, react, actor="bob")
    assert events[0].on  # type: ignore[attr-defined]
    state, events = run(state, react)
    assert not events[0].on  # type: ignore[attr-defined]
    assert state.comments["c1"].reactions == frozenset({("bob", "👍")})
    bad = c.ToggleReaction(command_id="t", board_id="b", comment_id="c1", emoji="two words")
    assert refused(state, bad).code == "comment.invalid_emoji"


@pytest.mark.parametrize(
    ("anchor", "code"),
    [
        (c.Anchor(kind="zone", target_id="nope", x=1, y=1), "zone.not_found"),
        (c.Anchor(kind="board", x=1), "comment.invalid_anchor"),
        (c.Anchor(kind="session"), "comment.invalid_anchor"),
        (c.Anchor(kind="message", target_id="m1", x=1, y=1), "comment.invalid_anchor"),
    ],
)
def test_anchors_are_checked(anchor: c.Anchor, code: str) -> None:
    assert refused(fold(*WITH_ZONES), comment("c1", anchor=anchor)).code == code


def test_a_deleted_board_refuses_everything() -> None:
    state = fold(CREATED, c.BoardDeleted(board_id="b", slug="main"))
    assert refused(state, move("w1", 0, 0)).code == "board.not_found"
    assert refused(state, comment("c1")).code == "board.not_found"
