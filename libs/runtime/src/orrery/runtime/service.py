"""A service process: connect, create its streams, run its command consumer, its projections
and its heartbeat, all in one TaskGroup; stop cleanly when asked."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from orrery.events import Registry, default_registry, subjects
from orrery.events.common import Heartbeat
from orrery.runtime import bus, topology
from orrery.runtime.clock import UUID7, SystemClock
from orrery.runtime.commands.consumer import CommandConsumer
from orrery.runtime.commands.handling import CommandBus
from orrery.runtime.decider import HandlerTable
from orrery.runtime.errors import InfrastructureError
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE, JetStreamEventStore
from orrery.runtime.projections.base import Projection
from orrery.runtime.projections.runner import PG_UNAVAILABLE, ProjectionRunner

log = logging.getLogger(__name__)

# A replica in standby waits for the projection lock another replica holds: that is healthy.
HEALTHY_STATES = frozenset({"running", "standby"})


@dataclass
class Wiring:
    """What a running service holds: its connections and its parts."""

    nc: Client
    js: JetStreamContext
    pool: asyncpg.Pool
    store: JetStreamEventStore
    runners: list[ProjectionRunner]
    started_at: datetime
    bus: CommandBus  # shared by the command consumer and the service's own tasks (one cache)


Extra = Callable[[Wiring, asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class ServiceSpec:
    """A service's composition: its context, handler table, projections and any extra tasks."""

    name: str
    context: str
    handlers: HandlerTable
    projections: Sequence[Projection]
    extras: Sequence[Extra] = field(default_factory=tuple)
    # Commands only the service's own tasks execute (outcomes of side effects). They are not in
    # the registry, so the command consumer can never decode one from the wire.
    internal_handlers: HandlerTable = field(default_factory=dict)
    # Other contexts whose event streams its projections read (created here if not yet there).
    reads: Sequence[str] = field(default_factory=tuple)
    registry: Registry = field(default_factory=default_registry)


async def create_pool(database_url: str) -> asyncpg.Pool:
    try:
        async with asyncio.timeout(15):
            pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    except (*PG_UNAVAILABLE, asyncpg.PostgresError) as exc:
        raise InfrastructureError(f"cannot reach PostgreSQL at {database_url}: {exc!r}") from exc
    assert pool is not None
    return pool


async def run_service(
    spec: ServiceSpec,
    nats_url: str,
    database_url: str,
    stop: asyncio.Event,
    *,
    heartbeat_interval: float = 1.0,
) -> None:
    clock, ids = SystemClock(), UUID7()
    nc = await bus.connect(nats_url, f"orrery-{spec.name}")
    pool = await create_pool(database_url)
    try:
        js = nc.jetstream()
        try:
            await topology.ensure_context(js, spec.context)
            for other in spec.reads:
                await topology.ensure_stream(js, topology.event_stream_config(other))
        except NATS_UNAVAILABLE as exc:
            raise InfrastructureError(f"cannot create {spec.context} streams: {exc!r}") from exc
        store = JetStreamEventStore(js, subjects.event_stream(spec.context), registry=spec.registry)
        runners = [ProjectionRunner(pool, js, p, spec.registry) for p in spec.projections]
        command_bus = CommandBus(
            spec.context, store, {**spec.handlers, **spec.internal_handlers}, clock, ids
        )
        wiring = Wiring(nc, js, pool, store, runners, clock.now(), command_bus)
        consumer = CommandConsumer(js, command_bus, spec.registry, nc=nc)
        instance = f"{socket.gethostname()}-{ids.new()[-12:]}"
        # Everything loaded so far (modules, the registry, clients) lives as long as the process:
        # out of the collector's sight, a full collection no longer walks it (200 ms on a busy
        # stack, a stall every live stream would feel).
        gc.freeze()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(consumer.run(stop))
            for runner in runners:
                tg.create_task(runner.run(stop))
            tg.create_task(heartbeat(wiring, spec.name, instance, heartbeat_interval, stop))
            for extra in spec.extras:
                tg.create_task(extra(wiring, stop))
        log.info("service %s stopped", spec.name)
    finally:
        try:
            async with asyncio.timeout(5):
                await pool.close()
        except TimeoutError:
            log.warning("service %s: PostgreSQL connections still busy at exit", spec.name)
            pool.terminate()
        await nc.close()


async def heartbeat(
    wiring: Wiring, service: str, instance: str, interval: float, stop: asyncio.Event
) -> None:
    """Publish liveness and projection positions on core NATS until stopped."""
    clock = SystemClock()
    encoder = msgspec.json.Encoder()
    while not stop.is_set():
        beat = Heartbeat(
            service=service,
            instance_id=instance,
            started_at=wiring.started_at,
            sent_at=clock.now(),
            interval_s=interval,
            projections={r.projection.name: r.last_seq for r in wiring.runners},
            detail="; ".join(
                f"{r.projection.name}: {r.state} {r.error}".strip()
                for r in wiring.runners
                if r.state not in HEALTHY_STATES
            ),
        )
        try:
            await wiring.nc.publish(subjects.heartbeat_subject(service), encoder.encode(beat))
        except NATS_UNAVAILABLE as exc:
            log.debug("heartbeat not sent: %r", exc)
        try:
            async with asyncio.timeout(interval):
                await stop.wait()
        except TimeoutError:
            continue
