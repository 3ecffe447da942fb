"""Event store on a JetStream stream.

Optimistic concurrency is JetStream's own ``Nats-Expected-Last-Subject-Sequence`` (error 10071
when stale) and idempotency its ``Nats-Msg-Id`` dedup window: the server decides both, so racing
writers in different processes are safe without any lock of ours.
"""

from __future__ import annotations

import asyncio
import re

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from orrery.events import Envelope, Event, EventMeta, Registry, codec, default_registry
from orrery.runtime.errors import ConcurrencyConflict, InfrastructureError
from orrery.runtime.eventstore.base import AppendResult

WRONG_LAST_SEQUENCE = 10071
_ACTUAL = re.compile(r"wrong last sequence: (\d+)")

# What NATS raises when the server is away or slow: retrying later can help.
NATS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    asyncio.TimeoutError,
)


DIRECT_LOAD_MAX = 16


class JetStreamEventStore:
    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        *,
        registry: Registry | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.stream = stream
        self._js = js
        self._registry = registry or default_registry()
        self._timeout = timeout

    async def append(
        self,
        subject: str,
        event: Event,
        *,
        expected_seq: int | None,
        msg_id: str,
        meta: EventMeta,
    ) -> AppendResult:
        headers = codec.event_headers(event, meta)
        headers[codec.H_MSG_ID] = msg_id
        if expected_seq is not None:
            headers[codec.H_EXPECTED_SUBJECT_SEQ] = str(expected_seq)
        try:
            ack = await self._js.publish(
                subject, codec.encode(event), timeout=self._timeout, headers=headers
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                # JetStream checks the expected sequence before its dedup window, so a retry
                # of an append that already landed looks like a conflict: recognise it.
                landed = await self._landed(subject, msg_id)
                if landed is not None:
                    return AppendResult(landed, duplicate=True)
                found = _ACTUAL.search(exc.description or "")
                raise ConcurrencyConflict(
                    subject, expected_seq, int(found.group(1)) if found else None
                ) from exc
            if isinstance(exc, nats.js.errors.ServiceUnavailableError):
                raise InfrastructureError(f"append to {subject}: {exc}") from exc
            raise
        except NATS_UNAVAILABLE as exc:
            raise InfrastructureError(f"append to {subject}: {exc!r}") from exc
        return AppendResult(ack.seq, duplicate=bool(ack.duplicate))

    async def _landed(self, subject: str, msg_id: str) -> int | None:
        """The sequence of ``msg_id`` if it is the subject's last event."""
        try:
            msg = await self._js.get_last_msg(self.stream, subject)
        except nats.js.errors.NotFoundError:
            return None
        except NATS_UNAVAILABLE as exc:
            raise InfrastructureError(f"last message of {subject}: {exc!r}") from exc
        if (msg.headers or {}).get(codec.H_MSG_ID) == msg_id:
            return int(msg.seq or 0)
        return None

    async def last_sequence(self, subject: str) -> int:
        try:
            msg = await self._js.get_last_msg(self.stream, subject)
        except nats.js.errors.NotFoundError:
            return 0
        except NATS_UNAVAILABLE as exc:
            raise InfrastructureError(f"last sequence of {subject}: {exc!r}") from exc
        return int(msg.seq or 0)

    async def load(self, subject: str, *, after: int = 0) -> list[Envelope[Event]]:
        last = await self.last_sequence(subject)
        if last <= after:
            return []
        out: list[Envelope[Event]] = []
        if after:
            # Catching up a cached state: usually a few events. Direct gets cost one round trip
            # each and no consumer; a longer tail falls through to an ordered consumer.
            out = await self._next_few(subject, after, last)
            if out and out[-1].sequence >= last:
                return out
            after = out[-1].sequence if out else after
        config = (
            ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1)
            if after
            else None
        )
        try:
            async with asyncio.timeout(self._timeout + (last - after) / 5_000):
                sub = await self._js.subscribe(
                    subject,
                    stream=self.stream,
                    ordered_consumer=True,
                    pending_msgs_limit=-1,
                    config=config,
                )
                try:
                    while not out or out[-1].sequence < last:
                        out.append(self.decode(await sub.next_msg(timeout=self._timeout)))
                finally:
                    await sub.unsubscribe()
        except NATS_UNAVAILABLE as exc:
            raise InfrastructureError(f"load {subject}: {exc!r}") from exc
        return out

    async def _next_few(self, subject: str, after: int, last: int) -> list[Envelope[Event]]:
        out: list[Envelope[Event]] = []
        cursor = after + 1
        try:
            while len(out) < DIRECT_LOAD_MAX:
                raw = await self._js.get_msg(
                    self.stream, seq=cursor, subject=subject, next=True, direct=True
                )
                seq = int(raw.seq or 0)
                out.append(
                    codec.decode_event(
                        self._registry,
                        headers=raw.headers,
                        body=raw.data or b"",
                        stream=self.stream,
                        subject=raw.subject or subject,
                        sequence=seq,
                    )
                )
                if seq >= last:
                    break
                cursor = seq + 1
        except nats.js.errors.NotFoundError:
            pass
        except NATS_UNAVAILABLE as exc:
            raise InfrastructureError(f"load {subject}: {exc!r}") from exc
        return out

    def decode(self, msg: Msg) -> Envelope[Event]:
        return decode_msg(self._registry, msg)


def decode_msg(registry: Registry, msg: Msg) -> Envelope[Event]:
    """A JetStream message as an envelope: the body decoded (and upcast), the metadata from its
    headers, and where it sits in the stream."""
    meta = msg.metadata
    return codec.decode_event(
        registry,
        headers=msg.headers,
        body=msg.data,
        stream=meta.stream,
        subject=msg.subject,
        sequence=meta.sequence.stream,
    )
