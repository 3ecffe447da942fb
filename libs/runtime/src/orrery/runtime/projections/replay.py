"""Reading a stream's history fast, in batches: an ordered consumer (no acks, flow-controlled,
gap-free: nats-py recreates it if a message goes missing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from orrery.runtime.errors import InfrastructureError
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE

# Batches the subscription may collect ahead of the caller; beyond that its callback waits (and
# nats-py buffers, as it always did with pending limits off).
BATCHES_AHEAD = 4


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
    reports nothing pending.

    Messages are gathered by the subscription's callback, which nats-py runs in the
    subscription's own task: ``next_msg`` would cost a task, a timer and a uuid per message,
    more than half of what reading costs."""
    if until <= after:
        return
    # js.subscribe takes no start sequence or filter list itself: they go in the config.
    config = ConsumerConfig(
        filter_subjects=list(filter_subjects) if len(filter_subjects) > 1 else None,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after else DeliverPolicy.ALL,
        opt_start_seq=after + 1 if after else None,
    )
    ready: asyncio.Queue[list[Msg] | None] = asyncio.Queue(maxsize=BATCHES_AHEAD)
    pending: list[Msg] = []
    done = False

    async def collect(msg: Msg) -> None:
        nonlocal pending, done
        if done:
            return
        meta = msg.metadata
        seq = meta.sequence.stream
        if seq <= until:
            pending.append(msg)
        if on_progress is not None and seq % batch == 0:
            on_progress(seq, until)
        last = seq >= until or meta.num_pending == 0
        if len(pending) >= batch or last:
            full, pending = pending, []
            if full:
                await ready.put(full)
            if last:
                done = True
                await ready.put(None)

    sub = await js.subscribe(
        filter_subjects[0],
        stream=stream,
        config=config,
        ordered_consumer=True,
        pending_msgs_limit=-1,
        pending_bytes_limit=-1,
        cb=collect,
    )
    try:
        while True:
            try:
                msgs = await asyncio.wait_for(ready.get(), idle_timeout)
            except TimeoutError:
                info = await asyncio.wait_for(sub.consumer_info(), 5.0)
                if info.num_pending == 0 and ready.empty():
                    done = True
                    if pending:
                        yield pending
                    break
                continue
            if msgs is None:
                break
            yield msgs
        if on_progress is not None:
            on_progress(until, until)
    finally:
        done = True
        await sub.unsubscribe()
