"""Sending commands and waiting for what they caused: the gateway's side of the command loop.

A command goes to ``<ctx>.cmd.<Name>`` with its id as ``Nats-Msg-Id`` (so a retried submit is
one command) and an ``Orrery-Reply-To`` inbox where the consumer reports the outcome. Events
that follow from it, also later ones recorded by a reactor, carry its id as their correlation id;
one ordered consumer per context (new events only) routes them to whoever waits on that id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from orrery.events import Command, Envelope, Event, EventMeta, Registry, codec, subjects, wire_tag
from orrery.events.common import CommandRejected, CommandReply
from orrery.events.errors import EventsError
from orrery.runtime.errors import InfrastructureError, RuntimeFailure
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE, decode_msg

log = logging.getLogger(__name__)

Until = Callable[[Envelope[Event]], bool]


class CommandFailed(RuntimeFailure):
    """The command was rejected (``code`` from the decider) or could not be handled."""

    def __init__(self, code: str, message: str, detail: dict[str, object] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.detail = detail or {}


class CommandTimeout(RuntimeFailure):
    """No outcome within the wait: the command is stored and may still be handled."""

    code = "command.pending"


@dataclass
class Sent:
    command_id: str
    reply: CommandReply | None
    events: list[Envelope[Event]] = field(default_factory=list)
    duplicate: bool = False

    @property
    def last_sequence(self) -> int:
        seqs = [e.sequence for e in self.events]
        if self.reply is not None:
            seqs.append(self.reply.last_sequence)
        return max(seqs, default=0)


class CommandClient:
    def __init__(self, nc: Client, js: JetStreamContext, registry: Registry) -> None:
        self._nc = nc
        self._js = js
        self._registry = registry
        self._waiters: dict[str, asyncio.Queue[Envelope[Event]]] = {}
        self._subs: dict[str, object] = {}
        self._lock = asyncio.Lock()
        self._decoder = msgspec.json.Decoder(CommandReply)

    async def _follow(self, ctx: str) -> None:
        async with self._lock:
            if ctx in self._subs:
                return
            try:
                self._subs[ctx] = await self._js.subscribe(
                    subjects.event_subjects(ctx),
                    stream=subjects.event_stream(ctx),
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.NEW,
                    cb=self._on_event,
                    pending_msgs_limit=-1,
                )
            except NATS_UNAVAILABLE as exc:
                raise InfrastructureError(f"cannot follow {ctx} events: {exc!r}") from exc

    async def _on_event(self, msg: Msg) -> None:
        correlation = (msg.headers or {}).get(codec.H_CORRELATION)
        queue = self._waiters.get(correlation or "")
        if queue is None:
            return
        try:
            queue.put_nowait(decode_msg(self._registry, msg))
        except EventsError as exc:
            log.warning("cannot decode %s: %r", msg.subject, exc)

    async def close(self) -> None:
        for sub in self._subs.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]
        self._subs.clear()

    async def send(
        self,
        command: Command,
        *,
        actor: str = "anonymous",
        until: Until | None = None,
        timeout: float = 30.0,
    ) -> Sent:
        """Send ``command``; return once the consumer answered and, with ``until``, once an
        event correlated with it satisfies ``until``. Raises CommandFailed on a rejection
        (also a rejection recorded later by a reactor) and CommandTimeout after ``timeout``."""
        ctx = command.CONTEXT
        await self._follow(ctx)
        cid = command.command_id
        queue: asyncio.Queue[Envelope[Event]] = asyncio.Queue()
        self._waiters[cid] = queue
        inbox = self._nc.new_inbox()
        reply_sub = await self._nc.subscribe(inbox, max_msgs=1)
        try:
            meta = EventMeta(occurred_at=datetime.now(UTC), actor=actor, correlation_id=cid)
            headers = codec.command_headers(command, meta)
            headers[codec.H_REPLY_TO] = inbox
            name = wire_tag(type(command)).split(".", 1)[1]
            try:
                ack = await self._js.publish(
                    subjects.command_subject(ctx, name),
                    codec.encode(command),
                    headers=headers,
                    stream=subjects.command_stream(ctx),
                )
            except NATS_UNAVAILABLE as exc:
                raise InfrastructureError(f"cannot send {name}: {exc!r}") from exc
            sent = Sent(cid, None, duplicate=bool(ack.duplicate))
            if sent.duplicate:
                return sent  # handled (or being handled) already: its effect is not repeated
            async with asyncio.timeout(timeout):
                try:
                    raw = await reply_sub.next_msg(timeout=timeout)
                except TimeoutError:
                    raise CommandTimeout(
                        f"{name} {cid} was accepted but not handled within {timeout:.0f}s"
                    ) from None
                sent.reply = self._decoder.decode(raw.data)
                if sent.reply.outcome in ("rejected", "failed"):
                    raise CommandFailed(sent.reply.code, sent.reply.message, sent.reply.detail)
                while until is not None:
                    envelope = await queue.get()
                    sent.events.append(envelope)
                    if isinstance(envelope.event, CommandRejected):
                        ev = envelope.event
                        raise CommandFailed(ev.code, ev.message, ev.detail)
                    if until(envelope):
                        break
            return sent
        except TimeoutError:
            raise CommandTimeout(
                f"{wire_tag(type(command))} {cid} is still in progress after {timeout:.0f}s"
            ) from None
        finally:
            self._waiters.pop(cid, None)
            with contextlib.suppress(Exception):
                await reply_sub.unsubscribe()
