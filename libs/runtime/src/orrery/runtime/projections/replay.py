"""Reading a stream's history fast, in batches: an ordered consumer (no acks, flow-controlled,
gap-free: nats-py recreates it if a message goes missing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from orrery.runtime.errors import InfrastructureError
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE


async def stream_last_seq(js: JetStreamContext, stream: str) -> int:
    try:
        info = await js.stream_info(stream)
    except NATS_UNAVAILABLE as exc:
        raise InfrastructureError(f"stream info {stream}: {exc!r}") from exc
    return int(info.state.last_seq)


async def replay(
    js: JetStreamContext,
    stream: str,
    filter_subjects: Sequence[str],
    *,
    after: int = 0,
    until: int,
    batch: int = 1_000,
    idle_timeout: float = 0.5,
    on_progress: Callable[[int, int], None] | None = None,
) -> AsyncIterator[list[Msg]]:
    """Yield messages with ``after < seq <= until`` in order, ``batch`` at a time.

    ``until`` is the stream's last sequence when the caller decided to stop there; subjects that
    are filtered out leave gaps in the sequence, so the end is also reached when the consumer
    reports nothing pending."""
    if until <= after:
        return
    opts: dict[str, object] = {}
    if after > 0:
        opts = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": after + 1}
    subject = filter_subjects[0] if len(filter_subjects) == 1 else ">"
    sub = await js.subscribe(
        subject, stream=stream, ordered_consumer=True, pending_msgs_limit=-1,
        pending_bytes_limit=-1, **opts  # type: ignore[arg-type]
    )
    pending: list[Msg] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_timeout)
            except nats.errors.TimeoutError:
                info = await asyncio.wait_for(sub.consumer_info(), 5.0)
                if info.num_pending == 0:
                    break
                continue
            seq = msg.metadata.sequence.stream
            if seq > until:
                break
            if len(filter_subjects) == 1 or _matches(msg.subject, filter_subjects):
                pending.append(msg)
            if on_progress is not None and seq % batch == 0:
                on_progress(seq, until)
            if len(pending) >= batch or seq >= until or msg.metadata.num_pending == 0:
                if pending:
                    yield pending
                    pending = []
                if seq >= until or msg.metadata.num_pending == 0:
                    break
        if pending:
            yield pending
        if on_progress is not None:
            on_progress(until, until)
    finally:
        await sub.unsubscribe()


def _matches(subject: str, filters: Sequence[str]) -> bool:
    tokens = subject.split(".")
    return any(_match(tokens, f.split(".")) for f in filters)


def _match(tokens: list[str], pattern: list[str]) -> bool:
    for i, p in enumerate(pattern):
        if p == ">":
            return len(tokens) > i
        if i >= len(tokens) or (p != "*" and p != tokens[i]):
            return False
    return len(tokens) == len(pattern)
