"""Orrery's event contract: every event and command, envelope, codec, subjects, versions."""

from orrery.events.base import Command, Envelope, Event, EventMeta, TraceContext, wire_tag
from orrery.events.registry import Registry, default_registry

__all__ = [
    "Command",
    "Envelope",
    "Event",
    "EventMeta",
    "Registry",
    "TraceContext",
    "default_registry",
    "wire_tag",
]
