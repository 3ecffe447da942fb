"""Follow Orrery's events from an outside tool: a durable JetStream consumer, nats-py only.

Orrery's events are plain JSON bodies in JetStream streams (one per context: ``CANVAS_EVENTS``
on ``canvas.evt.>``, ``SESSIONS_EVENTS`` on ``sessions.evt.>``, ``WORKTREES_EVENTS``,
``GATEWAY_EVENTS``), with their metadata in headers (``Orrery-Type``, ``Orrery-Version``,
``Orrery-Occurred-At``, ``Orrery-Actor``, ``Nats-Msg-Id``; see docs/events.md). This script
reads them through a *named durable pull consumer* on each stream it needs: the server keeps the
consumer's position, so a second run resumes after the last event the first one acknowledged.

Run it against ``orrery up``::

    pip install nats-py                        # or use the checkout's .venv/bin/python
    orrery up                                  # in another terminal
    python docs/examples/subscribe.py          # every canvas and session event, then live
    python docs/examples/subscribe.py --durable my-tool --subject 'canvas.evt.board.*'

The NATS URL is ``--url``, else ``$ORRERY_NATS_URL``, else the ``nats_url`` of the running
stack's state file ``$ORRERY_HOME/run/stack.json`` (``ORRERY_HOME`` defaults to ``~/.orrery``;
``orrery status`` prints it too). The subjects are the event subjects of docs/events.md
("Subscribing"): ``canvas.evt.board.<board_id>`` for one board, ``sessions.evt.session.<id>``
for one session. A consumer's subject filter cannot change later: use another ``--durable``
name, or remove the old consumers with ``--delete``.

Delivery is at least once: an event whose acknowledgement was lost comes again, so make the
handling idempotent, keyed by ``Nats-Msg-Id`` (the event's id; this script drops repeats it has
seen in this run). Events are never changed once stored: ``Orrery-Version`` says which version
of the body's shape an event was written with (docs/events.schema.json has the current ones).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

SEEN_MAX = 10_000  # recent event ids kept to drop redeliveries within a run


def default_url() -> str:
    if os.environ.get("ORRERY_NATS_URL"):
        return os.environ["ORRERY_NATS_URL"]
    home = Path(os.environ.get("ORRERY_HOME") or Path.home() / ".orrery").expanduser()
    try:
        return str(json.loads((home / "run" / "stack.json").read_text())["nats_url"])
    except (OSError, ValueError, KeyError):
        return "nats://127.0.0.1:14222"  # `orrery up`'s default port


class Follower:
    def __init__(self, count: int | None) -> None:
        self.remaining = count  # None: for ever
        self.seen: OrderedDict[str, None] = OrderedDict()

    def handle(self, msg: Any) -> None:
        """Your tool's work goes here. This one prints the event's type and its body."""
        headers = msg.headers or {}
        event = json.loads(msg.data)
        print(
            headers.get("Orrery-Type"),
            msg.subject,
            json.dumps(event, separators=(",", ":")),
            flush=True,
        )

    async def follow(self, sub: Any) -> None:
        while self.remaining is None or self.remaining > 0:
            batch = 100 if self.remaining is None else min(self.remaining, 100)
            try:
                msgs = await sub.fetch(batch, timeout=5)
            except nats.errors.TimeoutError:
                continue  # nothing new yet
            for msg in msgs:
                if self.remaining is not None and self.remaining <= 0:
                    await msg.nak()  # another stream's task reached --count: deliver it again
                    continue
                event_id = (msg.headers or {}).get("Nats-Msg-Id", "")
                if event_id not in self.seen:
                    self.handle(msg)
                    self.seen[event_id] = None
                    if len(self.seen) > SEEN_MAX:
                        self.seen.popitem(last=False)
                    if self.remaining is not None:
                        self.remaining -= 1
                await msg.ack_sync()  # after the work: a crash before this redelivers the event


async def quiet(_: Exception) -> None:
    """nats-py logs every failed (re)connection with a traceback; a failure is reported once."""


async def main(args: argparse.Namespace) -> int:
    try:
        nc = await asyncio.wait_for(
            nats.connect(args.url, name=args.durable, error_cb=quiet), timeout=5
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        print(
            f"cannot reach NATS at {args.url}: {exc!r} (is `orrery up` running?)", file=sys.stderr
        )
        return 1
    js = nc.jetstream()
    try:
        # Each subject lives in one context's stream; one durable consumer per stream.
        by_stream: dict[str, list[str]] = {}
        for subject in args.subject:
            try:
                stream = await js.find_stream_name_by_subject(subject)
            except nats.js.errors.NotFoundError:
                print(f"no stream holds {subject}", file=sys.stderr)
                return 1
            by_stream.setdefault(stream, []).append(subject)
        if args.delete:
            for stream in by_stream:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_consumer(stream, args.durable)
                    print(f"deleted consumer {args.durable} on {stream}")
            return 0
        follower = Follower(args.count)
        tasks = []
        for stream, subjects in by_stream.items():
            config = ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                # Only when the consumer is created; afterwards it resumes where it was.
                deliver_policy=DeliverPolicy.NEW if args.new else DeliverPolicy.ALL,
                filter_subjects=subjects if len(subjects) > 1 else None,
                ack_wait=30,
            )
            sub = await js.pull_subscribe(
                subjects[0], durable=args.durable, stream=stream, config=config
            )
            tasks.append(asyncio.create_task(follower.follow(sub)))
        await asyncio.gather(*tasks)
        return 0
    finally:
        await nc.close()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=default_url(), help="NATS URL (default: the stack's)")
    parser.add_argument(
        "--durable", default="example-subscriber", help="the consumer's name: where it resumes"
    )
    parser.add_argument(
        "--subject",
        action="append",
        help="event subjects to follow (repeatable; default: canvas.evt.> and sessions.evt.>)",
    )
    parser.add_argument(
        "--new", action="store_true", help="a new consumer starts with new events, not the log"
    )
    parser.add_argument("--count", "--max", type=int, help="stop after this many events")
    parser.add_argument("--delete", action="store_true", help="remove the durable consumers")
    args = parser.parse_args(argv)
    args.subject = args.subject or ["canvas.evt.>", "sessions.evt.>"]
    return args


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
    except KeyboardInterrupt:
        sys.exit(0)
