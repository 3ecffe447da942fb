"""Zone triggers: what the canvas fired, carried out on sessions.

Reads the canvas's board events through the durable consumer ``sessions-on-canvas`` (one
claimant at a time) and turns each ``ZoneTriggerFired`` into session commands: a new session in
the worktree with the rendered prompt, or a prompt, fork or spawn on the chosen session. Every
id (commands, the task, a fork's or spawn's child) derives from the trigger's id, so a
redelivered trigger has its effect once; a refusal (the session is gone, the worktree is
archived) is recorded as the command's typed rejection, correlated with the drop that fired it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

import asyncpg
from nats.js import JetStreamContext
from orrery.events import Command, Envelope, Event, Registry, subjects, wire_tag
from orrery.events import sessions as s
from orrery.events.canvas import ZoneTriggerFired
from orrery.events.errors import Rejection
from orrery.runtime import topology
from orrery.runtime.commands.handling import CommandBus
from orrery.runtime.reactions import consume_claimed, follow_up

log = logging.getLogger(__name__)

LOCK_KEY = "orrery.sessions.triggers"
_IDS = uuid.UUID("0b7d4f5e-2a63-4a8e-8f0e-5d1c7a9b3e44")


def derived(trigger_id: str, purpose: str) -> str:
    return str(uuid.uuid5(_IDS, f"{trigger_id}:{purpose}"))


def commands_for(fired: ZoneTriggerFired) -> list[Command]:
    """The session commands one fired trigger stands for, in order."""
    tid = fired.trigger_id
    prompt = s.SubmitPrompt(
        command_id=f"{tid}:prompt",
        session_id=fired.session_id,
        task_id=derived(tid, "task"),
        prompt=fired.prompt,
    )
    match fired.action:
        case "new_session":
            return [
                s.CreateSession(
                    command_id=f"{tid}:create",
                    session_id=fired.session_id,
                    worktree_id=fired.worktree_id,
                    title=fired.title,
                    settings=fired.settings,
                    board_id=fired.board_id,
                ),
                prompt,
            ]
        case "prompt":
            return [prompt]
        case "fork":
            return [
                s.ForkSession(
                    command_id=f"{tid}:fork",
                    session_id=fired.session_id,
                    child_id=derived(tid, "child"),
                    prompt=fired.prompt,
                    title=fired.title,
                )
            ]
        case "spawn":
            return [
                s.SpawnSession(
                    command_id=f"{tid}:spawn",
                    session_id=fired.session_id,
                    child_id=derived(tid, "child"),
                    prompt=fired.prompt,
                    title=fired.title,
                    settings=fired.settings,
                )
            ]
    raise AssertionError(fired.action)


@dataclass
class TriggerReactor:
    js: JetStreamContext
    pool: asyncpg.Pool
    bus: CommandBus
    registry: Registry

    async def run(self, stop: asyncio.Event) -> None:
        await consume_claimed(
            self.pool,
            LOCK_KEY,
            self.js,
            subjects.event_stream("canvas"),
            topology.foreign_consumer_name("sessions", "canvas"),
            self.registry,
            self.react,
            stop,
        )

    async def react(self, envelope: Envelope[Event]) -> None:
        if not isinstance(envelope.event, ZoneTriggerFired):
            return
        meta = follow_up(envelope)
        for command in commands_for(envelope.event):
            try:
                await self.bus.run(command, meta)
            except Rejection as exc:
                log.info("zone trigger %s refused: %s", envelope.event.trigger_id, exc)
                await self.bus.reject(command.command_id, wire_tag(type(command)), exc, meta)
                return
