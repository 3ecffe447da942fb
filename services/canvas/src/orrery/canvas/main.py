"""Composition root of the canvas service: its handler table, read models and the reactor that
renders zone triggers."""

from __future__ import annotations

import asyncio
from typing import Any

from orrery.canvas.domain import boards as d
from orrery.canvas.projections.boards import BoardsProjection
from orrery.canvas.projections.users import UserInfoProjection
from orrery.canvas.projections.worktrees import WorktreeInfoProjection
from orrery.canvas.reactor import CanvasReactor
from orrery.events import Command, default_registry
from orrery.events import canvas as c
from orrery.runtime.decider import Handler, HandlerTable
from orrery.runtime.entrypoint import run_standalone
from orrery.runtime.service import ServiceSpec, Wiring
from orrery.runtime.settings import Settings


def _on_board(decide: Any) -> Handler[Any, Any]:
    return Handler(d.BOARD, lambda command: command.board_id, decide)


HANDLERS: dict[type[Command], Handler[Any, Any]] = {
    c.CreateBoard: _on_board(d.decide_create),
    c.RenameBoard: _on_board(d.decide_rename),
    c.UpdateBoard: _on_board(d.decide_update),
    c.DeleteBoard: _on_board(d.decide_delete),
    c.AddZone: _on_board(d.decide_add_zone),
    c.UpdateZone: _on_board(d.decide_update_zone),
    c.DeleteZone: _on_board(d.decide_delete_zone),
    c.AddNote: _on_board(d.decide_add_note),
    c.UpdateNote: _on_board(d.decide_update_note),
    c.DeleteNote: _on_board(d.decide_delete_note),
    c.MoveCard: _on_board(d.decide_move_card),
    c.UnpinCard: _on_board(d.decide_unpin_card),
    c.RemoveCard: _on_board(d.decide_remove_card),
    c.ChooseZoneTrigger: _on_board(d.decide_choose_trigger),
    c.DismissZoneTrigger: _on_board(d.decide_dismiss_trigger),
    c.AddComment: _on_board(d.decide_add_comment),
    c.EditComment: _on_board(d.decide_edit_comment),
    c.MoveComment: _on_board(d.decide_move_comment),
    c.ResolveComment: _on_board(d.decide_resolve_comment),
    c.DeleteComment: _on_board(d.decide_delete_comment),
    c.ToggleReaction: _on_board(d.decide_toggle_reaction),
}

INTERNAL: HandlerTable = {d.RecordTrigger: _on_board(d.decide_record_trigger)}


async def react(wiring: Wiring, stop: asyncio.Event) -> None:
    reactor = CanvasReactor(wiring.js, wiring.pool, wiring.bus, default_registry())
    await reactor.run(stop)


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="canvas",
        context="canvas",
        handlers=HANDLERS,
        internal_handlers=INTERNAL,
        projections=[BoardsProjection(), WorktreeInfoProjection(), UserInfoProjection()],
        extras=[react],
        reads=("worktrees", "gateway"),
    )


def run() -> None:
    """``orrery-canvas``: run the canvas service alone against external NATS and Postgres."""
    run_standalone(spec)
