"""The registry: every event and command class by wire tag, and the upcasters between versions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from orrery.events.base import Command, Event, wire_tag
from orrery.events.errors import RegistryError, UnknownEventType
from orrery.events.upcasting import Upcaster, Upcasters

T = TypeVar("T", bound=type[Any])


class Registry:
    """Maps wire tags to classes. Tags are unique across events and commands alike."""

    def __init__(self) -> None:
        self._events: dict[str, type[Event]] = {}
        self._commands: dict[str, type[Command]] = {}
        self.upcasters = Upcasters()

    def _claim(self, cls: type[Any]) -> str:
        tag = wire_tag(cls)
        if tag in self._events or tag in self._commands:
            raise RegistryError(f"wire tag {tag!r} is used twice")
        return tag

    def event(self, cls: type[Event]) -> type[Event]:
        if not (isinstance(cls, type) and issubclass(cls, Event)):
            raise RegistryError(f"{cls!r} is not an Event")
        self._events[self._claim(cls)] = cls
        return cls

    def command(self, cls: type[Command]) -> type[Command]:
        if not (isinstance(cls, type) and issubclass(cls, Command)):
            raise RegistryError(f"{cls!r} is not a Command")
        tag = self._claim(cls)
        if not cls.CONTEXT or not tag.startswith(cls.CONTEXT + "."):
            raise RegistryError(f"{tag}: CONTEXT must be set and prefix the tag")
        self._commands[tag] = cls
        return cls

    def register(self, classes: Iterable[type[Any]]) -> None:
        for cls in classes:
            if issubclass(cls, Command):
                self.command(cls)
            else:
                self.event(cls)

    def upcaster(self, tag: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        def decorate(fn: Upcaster) -> Upcaster:
            self.upcasters.register(tag, from_version, fn)
            return fn

        return decorate

    def event_class(self, tag: str) -> type[Event]:
        try:
            return self._events[tag]
        except KeyError:
            raise UnknownEventType(f"no event class is registered for {tag!r}") from None

    def command_class(self, tag: str) -> type[Command]:
        try:
            return self._commands[tag]
        except KeyError:
            raise UnknownEventType(f"no command class is registered for {tag!r}") from None

    def events(self) -> dict[str, type[Event]]:
        return dict(self._events)

    def commands(self) -> dict[str, type[Command]]:
        return dict(self._commands)

    def check(self) -> None:
        """Fail loudly on a catalogue that could not read its own history."""
        for tag, cls in self._events.items():
            self.upcasters.check_complete(tag, cls.VERSION)


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The catalogue of every context's events and commands (built once, on first use)."""
    global _DEFAULT  # noqa: PLW0603 - a lazily built, process-wide constant
    if _DEFAULT is None:
        # Imported here: those modules import this one to register their upcasters.
        from orrery.events import canvas, common, gateway, sessions, worktrees  # noqa: PLC0415

        registry = Registry()
        for module in (common, canvas, sessions, worktrees, gateway):
            registry.register(module.CLASSES)
            module.register_upcasters(registry)
        registry.check()
        _DEFAULT = registry
    return _DEFAULT
