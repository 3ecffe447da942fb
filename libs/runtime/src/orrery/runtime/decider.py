"""The pure shapes a service's domain fills in: how to fold an aggregate and decide on a
command. Nothing here does I/O, so domain modules may import it (import-linter checks)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from orrery.events import Command, Envelope, Event
from orrery.runtime.clock import Clock, IdGen

S = TypeVar("S")
C = TypeVar("C", bound=Command)


@dataclass(frozen=True)
class Aggregate(Generic[S]):
    """How to rebuild one kind of aggregate from its events."""

    kind: str
    initial: Callable[[], S]
    evolve: Callable[[S, Event], S]

    def fold(self, events: Sequence[Envelope[Event]]) -> S:
        state = self.initial()
        for envelope in events:
            state = self.evolve(state, envelope.event)
        return state


@dataclass(frozen=True)
class Deps:
    """What ``decide`` may use besides the command and the state: injected, never global."""

    clock: Clock
    ids: IdGen
    actor: str


@dataclass(frozen=True)
class Handler(Generic[C, S]):
    """One row of a service's explicit handler table."""

    aggregate: Aggregate[S]
    aggregate_id: Callable[[C], str]
    decide: Callable[[C, S, Deps], Sequence[Event]]


HandlerTable = Mapping[type[Command], Handler[Any, Any]]
