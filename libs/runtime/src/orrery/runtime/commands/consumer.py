"""The command consumer: pulls a context's command stream and maps every outcome to ack, nak
with backoff, or term plus a dead letter, through one explicit table."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import Enum

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from orrery.events import EventMeta, Registry, codec, subjects
from orrery.events.common import CommandReply
from orrery.events.errors import DecodingError, EventsError, Rejection, UnknownEventType
from orrery.runtime import topology, tracing
from orrery.runtime.commands.handling import CommandBus
from orrery.runtime.errors import ConcurrencyConflict, InfrastructureError
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE

log = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()
UNAVAILABLE: tuple[type[BaseException], ...] = (InfrastructureError, *NATS_UNAVAILABLE)


class Disposition(Enum):
    ACK = "ack"  # done, including typed rejections: redelivery could not change the answer
    NAK = "nak"  # transient: redeliver after a backoff
    TERM = "term"  # can never succeed: stop redelivery, keep a dead letter


# Order matters: the first matching row wins.
ErrorKind = type[BaseException] | tuple[type[BaseException], ...]
ERROR_TABLE: tuple[tuple[ErrorKind, Disposition], ...] = (
    (Rejection, Disposition.ACK),
    (UnknownEventType, Disposition.TERM),
    (DecodingError, Disposition.TERM),
    (EventsError, Disposition.TERM),
    (ConcurrencyConflict, Disposition.NAK),
    (InfrastructureError, Disposition.NAK),
    (NATS_UNAVAILABLE, Disposition.NAK),
)


def disposition_of(error: BaseException) -> Disposition:
    for kind, disposition in ERROR_TABLE:
        if isinstance(error, kind):
            return disposition
    return Disposition.NAK  # an unexpected bug: retry, and dead-letter after max_deliver


@dataclass
class CommandConsumer:
    js: JetStreamContext
    bus: CommandBus
    registry: Registry
    batch: int = 32
    nc: Client | None = None  # for outcome replies; none sent without it

    async def run(self, stop: asyncio.Event) -> None:
        ctx = self.bus.context
        sub = await self.js.pull_subscribe_bind(
            durable=topology.command_consumer_name(ctx), stream=subjects.command_stream(ctx)
        )
        while not stop.is_set():
            try:
                msgs = await sub.fetch(self.batch, timeout=1.0)
            except TimeoutError:  # nats-py raises both its own and asyncio's: nothing new
                continue
            except NATS_UNAVAILABLE as exc:
                log.warning("command fetch for %s failed, retrying: %r", ctx, exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                await self.handle(msg)

    async def handle(self, msg: Msg) -> Disposition:
        command_id = (msg.headers or {}).get(codec.H_MSG_ID, "")
        command_type = (msg.headers or {}).get(codec.H_TYPE, "unknown")
        meta: EventMeta | None = None
        try:
            command = codec.decode_command(self.registry, msg.headers, msg.data)
            meta = codec.meta_from_headers(msg.headers)
            command_id = command.command_id
            with tracing.continued(f"handle {command_type}", meta.trace, command_id=command_id):
                done = await self.bus.run(command, meta)
            disposition = Disposition.ACK
            reply = CommandReply(
                command_id=command_id,
                outcome=done.outcome.value,
                events=done.appended,
                last_sequence=done.last_sequence,
            )
        except Exception as exc:  # noqa: BLE001 - the one place that catches broadly: by table
            disposition = await self._failed(msg, exc, command_id, command_type, meta)
            reply = CommandReply(
                command_id=command_id,
                outcome="rejected" if disposition is Disposition.ACK else "failed",
                code=str(getattr(exc, "code", type(exc).__name__)),
                message=str(getattr(exc, "message", exc)),
                detail=msgspec.to_builtins(getattr(exc, "detail", None) or {}),
            )
        await self._settle(msg, disposition)
        if disposition is not Disposition.NAK:
            await self._reply(msg, reply)
        return disposition

    async def _reply(self, msg: Msg, reply: CommandReply) -> None:
        """Tell a waiting client (the gateway) the outcome; best effort, core NATS."""
        inbox = (msg.headers or {}).get(codec.H_REPLY_TO)
        if not inbox or self.nc is None:
            return
        try:
            await self.nc.publish(inbox, _ENCODER.encode(reply))
        except NATS_UNAVAILABLE as exc:
            log.debug("reply for %s not sent: %r", reply.command_id, exc)

    async def _failed(
        self,
        msg: Msg,
        exc: Exception,
        command_id: str,
        command_type: str,
        meta: EventMeta | None,
    ) -> Disposition:
        disposition = disposition_of(exc)
        delivered = msg.metadata.num_delivered or 1
        if disposition is Disposition.NAK and delivered >= topology.COMMAND_MAX_DELIVER:
            disposition = Disposition.TERM  # out of retries: keep it as a dead letter
        if disposition is Disposition.NAK:
            log.warning("command %s (%s) will be retried: %r", command_id, command_type, exc)
            return disposition
        try:
            if disposition is Disposition.TERM:
                log.error("command %s (%s) dead-lettered: %r", command_id, command_type, exc)
                await self._dead_letter(msg, exc)
            if subjects.is_token(command_id):
                await self.bus.reject(command_id, command_type, exc, meta)
        except UNAVAILABLE as side_effect:
            # The rejection or dead letter did not land: keep the command for a later try.
            log.warning("could not record failure of %s: %r", command_id, side_effect)
            return Disposition.NAK
        return disposition

    async def _dead_letter(self, msg: Msg, exc: Exception) -> None:
        headers = dict(msg.headers or {})
        headers.pop(codec.H_MSG_ID, None)
        headers["Orrery-Dead-Letter-Reason"] = getattr(exc, "code", type(exc).__name__)
        headers["Orrery-Dead-Letter-Message"] = str(exc)[:1000]
        headers["Orrery-Original-Subject"] = msg.subject
        name = msg.subject.rsplit(".", 1)[-1]
        await self.js.publish(
            subjects.dead_letter_subject(self.bus.context, name), msg.data, headers=headers
        )

    async def _settle(self, msg: Msg, disposition: Disposition) -> None:
        if disposition is Disposition.ACK:
            await msg.ack()
        elif disposition is Disposition.TERM:
            await msg.term()
        else:
            delivered = msg.metadata.num_delivered or 1
            backoff = topology.COMMAND_BACKOFF_S
            await msg.nak(delay=backoff[min(delivered, len(backoff)) - 1])
