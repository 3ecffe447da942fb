"""Messages every context shares: typed command rejections and service heartbeats."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from orrery.events.base import Command, Event
from orrery.events.registry import Registry


class CommandRejected(Event, tag="orrery.CommandRejected", frozen=True):
    """A command that was decoded and decided on, and refused. Appended to the context's stream
    under ``rejection_subject(ctx, command_id)``, so a client waiting on a command id sees either
    the events it caused or this."""

    command_id: str
    command_type: str
    code: str
    message: str
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class CommandReply(msgspec.Struct, frozen=True, kw_only=True):
    """What the command consumer publishes to a command's ``Orrery-Reply-To`` subject once it
    has handled it (core NATS, never stored: the events are the record). ``outcome`` is
    ``accepted`` (``events`` were appended, possibly none when nothing changed),
    ``already_done`` (a redelivery), ``rejected`` or ``failed`` (dead-lettered)."""

    command_id: str
    outcome: str
    events: int = 0
    last_sequence: int = 0
    code: str = ""
    message: str = ""
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """Ephemeral liveness signal on core NATS (never stored): the gateway's /healthz reads it."""

    service: str
    instance_id: str
    started_at: datetime
    sent_at: datetime
    interval_s: float
    projections: dict[str, int] = msgspec.field(default_factory=dict)
    detail: str = ""


CLASSES: tuple[type[Event] | type[Command], ...] = (CommandRejected,)


def register_upcasters(registry: Registry) -> None:
    """No older versions yet."""
