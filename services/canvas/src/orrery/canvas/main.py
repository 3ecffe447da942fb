"""Composition root of the canvas service."""

from __future__ import annotations

from orrery.canvas.domain.boards import BOARD, decide_create, decide_rename
from orrery.canvas.projections.boards import BoardsProjection
from orrery.events.canvas import CreateBoard, RenameBoard
from orrery.runtime.decider import Handler, HandlerTable
from orrery.runtime.entrypoint import run_standalone
from orrery.runtime.service import ServiceSpec
from orrery.runtime.settings import Settings

HANDLERS: HandlerTable = {
    CreateBoard: Handler(BOARD, lambda c: c.board_id, decide_create),
    RenameBoard: Handler(BOARD, lambda c: c.board_id, decide_rename),
}


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="canvas",
        context="canvas",
        handlers=HANDLERS,
        projections=[BoardsProjection()],
    )


def run() -> None:
    """``orrery-canvas``: run the canvas service alone against external NATS and Postgres."""
    run_standalone(spec)
