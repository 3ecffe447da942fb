"""Bases for every event and command, and the envelope that carries an event's metadata.

Events and commands are msgspec structs with an explicit wire tag (``"canvas.BoardCreated"``,
never a module path) and an explicit version. Schema evolution follows msgspec's rules: a new
field gets a default and needs no bump; anything else bumps ``VERSION`` and registers an upcaster
(see ``upcasting.py``). Never ``array_like`` or ``forbid_unknown_fields`` on events: old readers
must keep decoding bodies written by newer writers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
from orrery.events.errors import RegistryError


class Event(msgspec.Struct, kw_only=True, frozen=True, tag_field="type"):
    """A fact that happened. Subclasses pass ``tag="<context>.<PastTenseName>"`` and
    ``frozen=True`` (inherited anyway; spelled out because type checkers need it)."""

    VERSION: ClassVar[int] = 1


class Command(msgspec.Struct, kw_only=True, frozen=True, tag_field="type"):
    """A request to change something. Subclasses pass ``tag="<context>.<ImperativeName>"``
    and ``frozen=True``.

    ``command_id`` is the idempotency key: it becomes ``Nats-Msg-Id`` on the command stream and
    the causation id of every event the command produces.
    """

    VERSION: ClassVar[int] = 1
    CONTEXT: ClassVar[str] = ""
    command_id: str


class TraceContext(msgspec.Struct, frozen=True, kw_only=True):
    """W3C trace context, carried in message headers so one prompt is one trace."""

    traceparent: str | None = None
    tracestate: str | None = None


class EventMeta(msgspec.Struct, frozen=True, kw_only=True):
    """What the writer knows about an event besides its body. (Its id is the idempotency key
    given to the append, stored as ``Nats-Msg-Id``: appending the same id twice stores one
    event, as in KurrentDB.)"""

    occurred_at: datetime
    actor: str = "system"
    correlation_id: str | None = None
    causation_id: str | None = None
    trace: TraceContext = TraceContext()


E = TypeVar("E", bound=Event)


class Envelope(msgspec.Struct, Generic[E], frozen=True, kw_only=True):
    """An event as stored: the body plus where and when it was written."""

    event: E
    event_id: str
    type: str
    version: int
    stream: str
    subject: str
    sequence: int
    occurred_at: datetime
    actor: str
    correlation_id: str | None
    causation_id: str | None
    trace: TraceContext


def wire_tag(cls: type[Any]) -> str:
    """The explicit tag of an event or command class; refuses the class-name default."""
    config = getattr(cls, "__struct_config__", None)
    tag = getattr(config, "tag", None)
    if not isinstance(tag, str) or "." not in tag:
        raise RegistryError(f"{cls.__qualname__} needs an explicit tag like 'context.Name'")
    return tag
