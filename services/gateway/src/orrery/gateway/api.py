"""What the REST and WebSocket handlers of one context share: the command client, that context's
read model (and the worktrees one, which every context resolves names against), NATS."""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from nats.aio.client import Client
from nats.js import JetStreamContext
from orrery.events import Command, Registry
from orrery.gateway.readmodel import WorktreesReadModel
from orrery.runtime.commands.client import CommandClient, Sent

WAIT_S = 30.0


class ReadModel(Protocol):
    async def caught_up(self, sequence: int, timeout: float = ...) -> None: ...


M = TypeVar("M", bound=ReadModel)


class ContextApi(Generic[M]):
    def __init__(  # noqa: PLR0917 - what the handlers share
        self,
        client: CommandClient,
        model: M,
        worktrees: WorktreesReadModel,
        nc: Client,
        js: JetStreamContext,
        registry: Registry,
    ) -> None:
        self.client = client
        self.model = model
        self.worktrees = worktrees
        self.nc = nc
        self.js = js
        self.registry = registry

    async def send(
        self,
        command: Command,
        until: Any = None,
        timeout: float = WAIT_S,
        actor: str = "anonymous",
    ) -> Sent:
        """Send ``command``, wait for its outcome (and ``until``), then until the read model
        shows it: what the handler reads next includes the change."""
        sent = await self.client.send(command, actor=actor, until=until, timeout=timeout)
        await self.model.caught_up(sent.last_sequence)
        return sent
