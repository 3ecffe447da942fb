"""Worktrees context: its events and commands arrive with the worktrees issue."""

from __future__ import annotations

from orrery.events.base import Command, Event
from orrery.events.registry import Registry

CLASSES: tuple[type[Event] | type[Command], ...] = ()


def register_upcasters(registry: Registry) -> None:
    """No events yet."""
