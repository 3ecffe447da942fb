"""What the REST and WebSocket handlers of one context share: the command client, that context's
read model (and the worktrees one, which every context resolves names against), NATS."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from orrery.events import Command, Envelope, Event, Registry, subjects
from orrery.events.errors import EventsError
from orrery.gateway import auth
from orrery.gateway.errors import ApiError, check_value
from orrery.gateway.readmodel import WorktreesReadModel
from orrery.runtime.commands.client import CommandClient, CommandFailed, CommandTimeout, Sent
from orrery.runtime.errors import InfrastructureError
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


# -- commands sent over a socket ---------------------------------------------------------------

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{8,128}$")  # a command id, an Idempotency-Key


class CommandIn(msgspec.Struct, frozen=True, tag="command", forbid_unknown_fields=True):
    """``{"type": "command", "id": KEY, "command": {"type": "<context>.<Name>", ...}}``: ``id``
    is the idempotency key (the same id twice is one command)."""

    id: str
    command: dict[str, Any]


def by_tag(*classes: type[Command]) -> dict[str, type[Command]]:
    """Commands a socket accepts, by their wire tag."""
    return {cls.__struct_config__.tag: cls for cls in classes}  # type: ignore[misc]


def to_command(
    frame: CommandIn, allowed: Mapping[str, type[Command]], fill: Mapping[str, Any]
) -> Command:
    """The contract command a ``command`` frame stands for, one of ``allowed``, with ``fill``
    (the socket's own board or session) over whatever the frame says."""
    if not IDEMPOTENCY_KEY.fullmatch(frame.id):
        raise ApiError(400, "frame.invalid", "a command id is 8 to 128 letters, digits, - or _")
    tag = frame.command.get("type")
    cls = allowed.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise ApiError(
            400,
            "frame.unknown_command",
            f"unknown command {tag!r}; one of {', '.join(sorted(allowed))}",
        )
    check_value(str(tag), frame.command, "frame.invalid")
    body = {k: v for k, v in frame.command.items() if k != "type"}
    body |= {"command_id": frame.id, **fill}
    try:
        return msgspec.convert(body, cls)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "frame.invalid", f"{tag}: {exc}") from None


async def run_command(
    client: CommandClient,
    principal: auth.Principal,
    frame: CommandIn,
    make: Callable[[CommandIn], Command],
) -> bytes:
    """Send the command a frame stands for as ``principal`` (a member at least) and answer with
    ``accepted {id, seq, duplicate}``, ``rejected {id, code, message, detail}`` or ``pending``."""
    try:
        command = make(frame)
        if not principal.at_least("member"):
            raise ApiError(
                403,
                "auth.forbidden",
                f"this needs the member role; you are {principal.role}",
                {"needs": "member", "role": principal.role},
            )
        sent = await client.send(command, actor=principal.user_id, timeout=WAIT_S)
    except ApiError as exc:
        reply: dict[str, Any] = {"type": "rejected", "id": frame.id, "code": exc.code}
        reply |= {"message": exc.message, "detail": exc.detail}
    except CommandFailed as exc:
        reply = {"type": "rejected", "id": frame.id, "code": exc.code}
        reply |= {"message": exc.message, "detail": exc.detail}
    except CommandTimeout as exc:
        reply = {"type": "pending", "id": frame.id, "message": str(exc)}
    except InfrastructureError as exc:
        reply = {"type": "rejected", "id": frame.id, "code": "service.unavailable"}
        reply |= {"message": exc.message, "detail": {}}
    else:
        reply = {"type": "accepted", "id": frame.id, "seq": sent.last_sequence}
        reply["duplicate"] = sent.duplicate
    return _encoder.encode(reply)


def error_frame(code: str, message: str, **extra: Any) -> bytes:
    return _encoder.encode({"type": "error", "code": code, "message": message, **extra})
