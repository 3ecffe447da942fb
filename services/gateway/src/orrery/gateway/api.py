"""What the REST and WebSocket handlers of one context share: the command client, that context's
read model (and the worktrees one, which every context resolves names against), NATS."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from orrery.events import Command, Envelope, Event, Registry, subjects
from orrery.events.errors import EventsError
from orrery.gateway import auth
from orrery.gateway.readmodel import WorktreesReadModel
from orrery.runtime.commands.client import CommandClient, Sent
from orrery.runtime.eventstore.jetstream import decode_msg

log = logging.getLogger(__name__)

WAIT_S = 30.0
_encoder = msgspec.json.Encoder()


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
        actor: str | None = None,
    ) -> Sent:
        """Send ``command``, wait for its outcome (and ``until``), then until the read model
        shows it: what the handler reads next includes the change."""
        sent = await self.client.send(
            command, actor=actor or auth.actor(), until=until, timeout=timeout
        )
        await self.model.caught_up(sent.last_sequence)
        return sent


def event_frame(envelope: Envelope[Event]) -> bytes:
    """A stored event as a live view's ``event`` frame."""
    return _encoder.encode(
        {
            "type": "event",
            "seq": envelope.sequence,
            "event_type": envelope.type,
            "event": envelope.event,
            "occurred_at": envelope.occurred_at.isoformat(),
            "actor": envelope.actor,
        }
    )


async def follow(  # noqa: PLR0917 - which aggregate, from where, to whom
    js: JetStreamContext,
    registry: Registry,
    ctx: str,
    kind: str,
    aggregate_id: str,
    after: int,
    deliver: Callable[[bytes], Awaitable[None]],
) -> Any:
    """One aggregate's stored events with a stream sequence above ``after``, then live, each as
    an ``event`` frame (an ordered consumer: no gap, no duplicate). Returns the subscription."""

    async def on_event(msg: Msg) -> None:
        try:
            envelope: Envelope[Event] = decode_msg(registry, msg)
        except EventsError as exc:
            log.error("cannot decode %s: %r", msg.subject, exc)
            return
        await deliver(event_frame(envelope))

    return await js.subscribe(
        subjects.event_subject(ctx, kind, aggregate_id),
        stream=subjects.event_stream(ctx),
        ordered_consumer=True,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
        ),
        cb=on_event,
    )
