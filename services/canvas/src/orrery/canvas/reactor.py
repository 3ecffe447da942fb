"""The canvas reactor: renders the zone triggers the board log requests.

A ``ZoneTriggerRequested`` (a card entered a zone with a trigger) is rendered here, on the
server, with the one template context (SPEC §3: the worktree and its repo from the canvas's copy
of the worktrees log, the board, the zone, the user who dropped the card), then recorded on the
board: ``ZoneTriggerFired`` for ``always_new`` (the sessions service creates the session),
``ZoneTriggerOffered`` for ``show_picker`` (the user chooses), or ``ZoneTriggerFailed`` with the
template's error. The outcome's command id derives from the trigger's id and the decision checks
the trigger is still waiting, so a redelivered request records one outcome; a replay of the log
(a projection rebuild) reads the recorded outcome and fires nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

import asyncpg
from nats.js import JetStreamContext
from orrery.canvas.domain.boards import BOARD, RecordTrigger, session_title
from orrery.canvas.projections.users import user_ctx
from orrery.canvas.projections.worktrees import template_subjects
from orrery.events import Envelope, Event, Registry, subjects
from orrery.events.canvas import (
    ZoneTriggerFailed,
    ZoneTriggerFired,
    ZoneTriggerOffered,
    ZoneTriggerRequested,
)
from orrery.events.errors import Rejection
from orrery.runtime import topology
from orrery.runtime.commands.handling import CommandBus
from orrery.runtime.reactions import consume_claimed, follow_up
from orrery.templating import (
    BoardCtx,
    RepoCtx,
    TemplateContext,
    TemplateError,
    WorktreeCtx,
    ZoneCtx,
    render,
)

log = logging.getLogger(__name__)

LOCK_KEY = "orrery.canvas.reactor"
WORKTREE_WAIT_S = 10.0  # a card placed right after its worktree was created: let the copy catch up
_SESSIONS = uuid.UUID("2d0c86a4-4f0e-4c1e-9a55-6a3f0f1b8e21")


def new_session_id(trigger_id: str) -> str:
    """The session an ``always_new`` trigger creates: the same for every delivery."""
    return str(uuid.uuid5(_SESSIONS, trigger_id))


@dataclass
class CanvasReactor:
    js: JetStreamContext
    pool: asyncpg.Pool
    bus: CommandBus
    registry: Registry
    worktree_wait_s: float = WORKTREE_WAIT_S

    async def run(self, stop: asyncio.Event) -> None:
        await consume_claimed(
            self.pool,
            LOCK_KEY,
            self.js,
            subjects.event_stream("canvas"),
            topology.reactor_consumer_name("canvas"),
            self.registry,
            self.react,
            stop,
        )

    async def react(self, envelope: Envelope[Event]) -> None:
        if isinstance(envelope.event, ZoneTriggerRequested):
            outcome = await self.render(envelope, envelope.event)
            try:
                await self.bus.run(
                    RecordTrigger(
                        command_id=f"{envelope.event.trigger_id}:outcome",
                        board_id=envelope.event.board_id,
                        trigger_id=envelope.event.trigger_id,
                        outcome=outcome,
                    ),
                    follow_up(envelope),
                )
            except Rejection as exc:  # the board was deleted meanwhile: nothing left to record
                log.info("trigger %s not recorded: %s", envelope.event.trigger_id, exc)

    async def _subjects(self, worktree_id: str) -> tuple[RepoCtx, WorktreeCtx] | None:
        deadline = time.monotonic() + self.worktree_wait_s
        while True:
            found = await template_subjects(self.pool, worktree_id)
            if found is not None or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.1)

    async def render(
        self, envelope: Envelope[Event], request: ZoneTriggerRequested
    ) -> ZoneTriggerFired | ZoneTriggerOffered | ZoneTriggerFailed:
        def failed(code: str, message: str) -> ZoneTriggerFailed:
            return ZoneTriggerFailed(
                board_id=request.board_id,
                trigger_id=request.trigger_id,
                zone_id=request.zone_id,
                worktree_id=request.worktree_id,
                code=code,
                message=message,
            )

        board = await self.bus.current(BOARD, request.board_id)
        zone = board.zones.get(request.zone_id)
        if zone is None or zone.trigger is None:
            return failed("trigger.gone", "the zone or its trigger was removed before it fired")
        found = await self._subjects(request.worktree_id)
        if found is None:
            return failed("worktree.not_found", f"no worktree {request.worktree_id}")
        repo, worktree = found
        context = TemplateContext(
            repo=repo,
            worktree=worktree,
            board=BoardCtx(
                name=board.name,
                slug=board.slug,
                description=board.description,
                context=dict(board.context),
            ),
            zone=ZoneCtx(label=zone.label),
            user=await user_ctx(self.pool, envelope.actor),
        )
        try:
            prompt = render(zone.trigger.template, context)
        except TemplateError as exc:
            where = f" (line {exc.line})" if exc.line else ""
            return failed(exc.code, f"{exc.message}{where}")
        if not prompt.strip():
            return failed("template.empty", "the trigger's template rendered an empty prompt")
        if zone.trigger.behavior == "show_picker":
            return ZoneTriggerOffered(
                board_id=request.board_id,
                trigger_id=request.trigger_id,
                zone_id=zone.zone_id,
                worktree_id=request.worktree_id,
                prompt=prompt,
                settings=zone.trigger.settings,
                offered_to=envelope.actor,
            )
        return ZoneTriggerFired(
            board_id=request.board_id,
            trigger_id=request.trigger_id,
            zone_id=zone.zone_id,
            worktree_id=request.worktree_id,
            action="new_session",
            prompt=prompt,
            settings=zone.trigger.settings,
            session_id=new_session_id(request.trigger_id),
            title=session_title(zone.label),
        )
