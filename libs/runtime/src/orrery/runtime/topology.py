"""Stream and consumer definitions: the one source for ``deploy/nats/`` and for start-up.

Each service calls ``ensure_context`` at start; ``make types`` writes the same definitions as
JSON into ``deploy/nats/`` for platform teams who create streams with the ``nats`` CLI.
"""

from __future__ import annotations

import json
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from orrery.events import subjects

DUPLICATE_WINDOW_S = 120.0
DEAD_LETTER_MAX_AGE_S = 30 * 24 * 3600.0
COMMAND_ACK_WAIT_S = 30.0
COMMAND_MAX_DELIVER = 8
# Delays of the consumer's explicit naks. Deliberately not the consumers' `backoff`: a server-side
# backoff replaces `ack_wait` (its first step would become the ack deadline, and a command or
# reaction taking longer than 0.5 s would be redelivered while still running).
COMMAND_BACKOFF_S = [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]


def event_stream_config(ctx: str, *, replicas: int = 1) -> StreamConfig:
    """The append-only log of one context: never deleted from, never purged."""
    return StreamConfig(
        name=subjects.event_stream(ctx),
        description=f"Orrery {ctx} events (append-only log)",
        subjects=[subjects.event_subjects(ctx)],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        allow_direct=True,
        deny_delete=True,
        deny_purge=True,
    )


def command_stream_config(ctx: str, *, replicas: int = 1) -> StreamConfig:
    """Commands waiting for their service: a message goes away once handled (work queue)."""
    return StreamConfig(
        name=subjects.command_stream(ctx),
        description=f"Orrery {ctx} commands (work queue)",
        subjects=[subjects.command_subjects(ctx)],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


def dead_letter_stream_config(ctx: str, *, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=subjects.dead_letter_stream(ctx),
        description=f"Orrery {ctx} commands that could not be handled",
        subjects=[subjects.dead_letter_subjects(ctx)],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=DEAD_LETTER_MAX_AGE_S,
    )


def command_consumer_name(ctx: str) -> str:
    return f"{subjects.token(ctx)}-command-handler"


def command_consumer_config(ctx: str) -> ConsumerConfig:
    """One durable pull consumer per context, shared by every replica of its service."""
    return ConsumerConfig(
        durable_name=command_consumer_name(ctx),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=COMMAND_ACK_WAIT_S,
        max_deliver=COMMAND_MAX_DELIVER,
        max_ack_pending=1_000,
    )


# Contexts with a reactor (side effects driven by their own events) and an output stream.
REACTOR_CONTEXTS = ("worktrees", "sessions", "canvas")
# Reactors on another context's events: (reacting context, source context, aggregate kind).
# The sessions service carries out the zone triggers the canvas fires.
FOREIGN_REACTORS: tuple[tuple[str, str, str], ...] = (("sessions", "canvas", "board"),)
OUTPUT_CONTEXTS = ("worktrees",)
OUTPUT_MAX_AGE_S = 24 * 3600.0
OUTPUT_MAX_MSGS_PER_SUBJECT = 2_000
REACTOR_ACK_WAIT_S = 60.0


def output_stream_config(ctx: str, *, replicas: int = 1) -> StreamConfig:
    """Output kept for a day (2,000 messages per subject) so live views can resume by seq."""
    return StreamConfig(
        name=subjects.output_stream(ctx),
        description=f"Orrery {ctx} output (short retention)",
        subjects=[subjects.output_subjects(ctx)],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=replicas,
        max_age=OUTPUT_MAX_AGE_S,
        max_msgs_per_subject=OUTPUT_MAX_MSGS_PER_SUBJECT,
        allow_direct=True,
    )


def reactor_consumer_name(ctx: str) -> str:
    return f"{subjects.token(ctx)}-reactor"


def reactor_consumer_config(ctx: str) -> ConsumerConfig:
    """The reactor's durable consumer on its own context's events: every event is offered once
    and redelivered until acknowledged (the reactor acks after recording the outcome)."""
    return ConsumerConfig(
        durable_name=reactor_consumer_name(ctx),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=subjects.event_subjects(ctx),
        ack_wait=REACTOR_ACK_WAIT_S,
        max_deliver=-1,
        max_ack_pending=1_000,
    )


def foreign_consumer_name(ctx: str, source: str) -> str:
    return f"{subjects.token(ctx)}-on-{subjects.token(source)}"


def foreign_consumer_config(ctx: str, source: str, kind: str) -> ConsumerConfig:
    """``ctx``'s durable consumer on ``source``'s events of one aggregate kind, like a reactor
    consumer on its own context (every event offered once, redelivered until acknowledged)."""
    return ConsumerConfig(
        durable_name=foreign_consumer_name(ctx, source),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=subjects.event_subjects(source, kind),
        ack_wait=REACTOR_ACK_WAIT_S,
        max_deliver=-1,
        max_ack_pending=1_000,
    )


def stream_configs(ctx: str, *, replicas: int = 1) -> list[StreamConfig]:
    return [
        event_stream_config(ctx, replicas=replicas),
        command_stream_config(ctx, replicas=replicas),
        dead_letter_stream_config(ctx, replicas=replicas),
        *([output_stream_config(ctx, replicas=replicas)] if ctx in OUTPUT_CONTEXTS else []),
    ]


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or bring an existing one's settings up to date."""
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:  # stream name already in use: a racing service made it
                raise
        return
    await js.update_stream(config)


async def ensure_context(js: JetStreamContext, ctx: str, *, replicas: int = 1) -> None:
    for config in stream_configs(ctx, replicas=replicas):
        await ensure_stream(js, config)
    await js.add_consumer(subjects.command_stream(ctx), command_consumer_config(ctx))
    if ctx in REACTOR_CONTEXTS:
        await js.add_consumer(subjects.event_stream(ctx), reactor_consumer_config(ctx))
    for reader, source, kind in FOREIGN_REACTORS:
        if reader == ctx:
            await ensure_stream(js, event_stream_config(source, replicas=replicas))
            await js.add_consumer(
                subjects.event_stream(source), foreign_consumer_config(ctx, source, kind)
            )


def _clean(config: dict[str, Any]) -> dict[str, Any]:
    """nats-py's as_dict gives seconds as nanoseconds already; drop unset keys."""
    return {k: v for k, v in config.items() if v is not None}


def export_definitions() -> dict[str, str]:
    """``{file name: JSON}`` of every stream and consumer, for ``deploy/nats/``."""
    files: dict[str, str] = {}
    for ctx in subjects.CONTEXTS:
        for config in stream_configs(ctx):
            files[f"streams/{config.name}.json"] = json.dumps(_clean(config.as_dict()), indent=2)
        consumer = command_consumer_config(ctx)
        files[f"consumers/{subjects.command_stream(ctx)}.{consumer.durable_name}.json"] = (
            json.dumps(_clean(consumer.as_dict()), indent=2)
        )
        if ctx in REACTOR_CONTEXTS:
            reactor = reactor_consumer_config(ctx)
            files[f"consumers/{subjects.event_stream(ctx)}.{reactor.durable_name}.json"] = (
                json.dumps(_clean(reactor.as_dict()), indent=2)
            )
    for reader, source, kind in FOREIGN_REACTORS:
        foreign = foreign_consumer_config(reader, source, kind)
        files[f"consumers/{subjects.event_stream(source)}.{foreign.durable_name}.json"] = (
            json.dumps(_clean(foreign.as_dict()), indent=2)
        )
    return files
