"""``orrery events tail``: the event log as it is written, for people (one line per event) and
for tools (``--json``, one object per line).

It reads the contexts' event streams directly from NATS (``ORRERY_NATS_URL``, else the running
stack's), through ephemeral ordered consumers: nothing is acknowledged, nothing is left behind,
and any number of tails can run at once. Boards, sessions and worktrees named by the options are
resolved through the gateway's REST API (so a slug or an id prefix works).

NATS and the event contract load inside the command: every other ``orrery`` command (they all
import this module to register it) starts without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer
from orrery.cli import state
from orrery.cli.api import ApiCallError
from orrery.cli.display import api, console
from orrery.runtime import settings as settings_mod
from orrery.runtime.errors import ConfigurationError, InfrastructureError
from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.api import ConsumerConfig
    from orrery.events import Registry

events_app = typer.Typer(help="The event log: follow it live, as lines or as JSON for tools.")
notes = Console(stderr=True)  # what is followed, reconnections: never mixed into the events

CONNECT_TIMEOUT_S = 5.0
QUEUE_MAX = 10_000  # events decoded ahead of the printer; beyond it NATS holds them
SUMMARY_MAX = 160
VALUE_MAX = 40
NAMING = ("label", "name", "title", "slug", "kind")  # what names a nested struct in a summary
STYLES = {"canvas": "green", "sessions": "magenta", "worktrees": "yellow", "gateway": "cyan"}


@dataclass
class Source:
    """One ordered consumer: a context's whole event stream, or some of its subjects."""

    context: str
    subjects: list[str] = field(default_factory=list)  # empty: every event of the context
    # Worktree lifecycle events share one registry subject: keep only these worktrees' ones.
    worktrees: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Item:
    """One event, ready to print."""

    seq: int
    stream: str
    subject: str
    type: str
    version: int | None
    id: str | None
    occurred_at: str
    actor: str
    event: Any
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq, "stream": self.stream, "subject": self.subject, "type": self.type,
            "version": self.version, "id": self.id, "occurred_at": self.occurred_at,
            "actor": self.actor, "event": self.event,
        }  # fmt: skip
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class Options:
    types: tuple[str, ...]
    from_start: bool
    last: int | None
    count: int | None
    as_json: bool


# -- what to follow --------------------------------------------------------------------------------


def _seg(ref: str) -> str:
    return quote(ref, safe="")


def _resolve(boards: list[str], sessions: list[str], worktrees: list[str]) -> dict[str, list[str]]:
    """Every named board, session and worktree as its id (unknown ones: one clear error)."""
    if not (boards or sessions or worktrees):
        return {}
    client = api()
    out: dict[str, list[str]] = {"board": [], "session": [], "worktree": []}
    for ref in boards:
        out["board"].append(client.call("GET", f"/api/boards/{_seg(ref)}")["board"]["id"])
    for ref in sessions:
        out["session"].append(client.call("GET", f"/api/sessions/{_seg(ref)}")["id"])
    for ref in worktrees:
        if "/" in ref:  # repo/name cannot travel in a path segment
            every = client.call("GET", "/api/worktrees", params={"archived": True, "all": True})
            found = [w["id"] for w in every if f"{w['repo_slug']}/{w['name']}" == ref]
            if not found:
                raise ApiCallError(404, "worktree.not_found", f"no worktree {ref!r}")
            out["worktree"].append(found[0])
        else:
            out["worktree"].append(client.call("GET", f"/api/worktrees/{_seg(ref)}")["id"])
    return out


def _check_types(registry: Registry, patterns: list[str]) -> set[str]:
    """Each ``--type`` must name (or, with ``*``, match) a known event; returns the contexts
    the matched events live in."""
    import difflib  # noqa: PLC0415 - only for a mistyped tag

    from orrery.events import subjects  # noqa: PLC0415 - see the module's docstring

    tags = sorted(registry.events())
    contexts: set[str] = set()
    for pattern in patterns:
        matched = [t for t in tags if fnmatch.fnmatchcase(t, pattern)]
        if not matched:
            close = difflib.get_close_matches(pattern, tags, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else " (see docs/events.md)"
            raise typer.BadParameter(f"no event {pattern!r}{hint}", param_hint="--type")
        for tag in matched:
            # orrery.CommandRejected and the like are appended in every context.
            shared = tag.startswith("orrery.")
            contexts |= set(subjects.CONTEXTS) if shared else {subjects.context_of_tag(tag)}
    return contexts


def sources(contexts: set[str], ids: dict[str, list[str]]) -> list[Source]:
    """Whole streams for ``contexts``; for the rest, the subjects of the named aggregates."""
    from orrery.events import subjects  # noqa: PLC0415 - see the module's docstring

    out: dict[str, Source] = {ctx: Source(ctx) for ctx in subjects.CONTEXTS if ctx in contexts}
    parts: dict[str, Source] = {}

    def add(ctx: str, subject: str) -> Source:
        part = parts.setdefault(ctx, Source(ctx))
        if subject not in part.subjects:
            part.subjects.append(subject)
        return part

    for board_id in ids.get("board", []):
        add("canvas", subjects.event_subject("canvas", "board", board_id))
    for session_id in ids.get("session", []):
        add("sessions", subjects.event_subject("sessions", "session", session_id))
    for worktree_id in ids.get("worktree", []):
        add("worktrees", subjects.event_subject("worktrees", "env", worktree_id))
        add("worktrees", subjects.event_subject("worktrees", "gitstate", worktree_id))
        add("worktrees", subjects.event_subjects("worktrees", "registry"))
        parts["worktrees"].worktrees.add(worktree_id)
    for ctx, part in parts.items():
        out.setdefault(ctx, part)  # a whole stream already covers its aggregates
    return list(out.values())


def _nats_url() -> str:
    settings = settings_mod.load()
    if settings.nats_url:
        return settings.nats_url
    running = state.read(settings.home)
    if running is None or not state.alive(running.pid):
        raise ConfigurationError(
            f"Orrery is not running (ORRERY_HOME={settings.home}): start it with `orrery up`,"
            " or set ORRERY_NATS_URL"
        )
    return running.nats_url


# -- one line per event ----------------------------------------------------------------------------


def _brief(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):  # a struct by its name or label; a small mapping in full
        keys = [k for k in NAMING if k in value] or list(value)
        inner = " ".join(f"{k}={_brief(value[k])}" for k in keys[:3])
        return "{" + inner + (" …" if len(keys) > 3 or len(keys) < len(value) else "") + "}"
    if isinstance(value, list):
        if all(isinstance(v, (str, int, float)) for v in value) and len(value) <= 4:
            return "[" + ",".join(_brief(v) for v in value) + "]"
        return f"[{len(value)} items]"
    text = str(value).replace("\n", " ")
    if len(text) > VALUE_MAX:
        text = text[: VALUE_MAX - 1] + "…"
    return repr(text) if isinstance(value, str) and (" " in text or not text) else text


def summary(event: Any, subject: str) -> str:
    """The body in brief: ``key=value`` pairs, without the tag and the aggregate's own id."""
    if not isinstance(event, dict):
        return _brief(event)
    own = subject.rsplit(".", 1)[-1]
    parts = [
        f"{k}={_brief(v)}"
        for k, v in event.items()
        if k != "type" and not (k.endswith("_id") and v == own)
    ]
    text = " ".join(parts)
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def _clock(occurred_at: str) -> str:
    try:
        when = datetime.fromisoformat(occurred_at).astimezone()
    except ValueError:
        return occurred_at
    today = datetime.now(UTC).astimezone().date()
    return when.strftime("%H:%M:%S" if when.date() == today else "%Y-%m-%d %H:%M:%S")


def line(item: Item) -> Text:
    ctx = item.type.split(".", 1)[0]
    text = Text()
    text.append(f"{item.seq:>6} ", style="dim")
    text.append(f"{_clock(item.occurred_at)} ", style="dim")
    text.append(f"{item.type:<32}", style=f"bold {STYLES.get(ctx, '')}".strip())
    text.append(f" {item.subject}", style="blue")
    text.append(f"  {item.actor}", style="cyan")
    if item.error is not None:
        text.append(f"  cannot decode: {item.error}", style="red")
    text.append(f"  {summary(item.event, item.subject)}")
    return text


# -- following -------------------------------------------------------------------------------------


class Feed:
    """One source's messages: filtered by type (from the header, before decoding) and worktree,
    and with ``--last`` held back until the consumer has caught up, then only the last N let
    through."""

    def __init__(
        self,
        source: Source,
        registry: Registry,
        opts: Options,
        put: Callable[[Item], Awaitable[None]],
    ) -> None:
        from orrery.events import subjects  # noqa: PLC0415 - see the module's docstring

        self.source = source
        self.registry = registry
        self.types = opts.types
        self.put = put
        self.held: deque[Item] | None = deque(maxlen=opts.last) if opts.last else None
        self.registry_prefix = subjects.event_subjects("worktrees", "registry")[:-1]

    def accept(self, msg: Msg) -> Item | None:
        import msgspec  # noqa: PLC0415 - see the module's docstring
        from orrery.events import codec  # noqa: PLC0415
        from orrery.events.errors import EventsError  # noqa: PLC0415
        from orrery.runtime.eventstore.jetstream import decode_msg  # noqa: PLC0415

        headers = msg.headers or {}
        tag = headers.get(codec.H_TYPE, "?")
        if self.types and not any(fnmatch.fnmatchcase(tag, t) for t in self.types):
            return None
        meta = msg.metadata
        try:
            envelope = decode_msg(self.registry, msg)
        except EventsError as exc:  # a newer writer's event, say: shown raw, not fatal
            try:
                body = msgspec.json.decode(msg.data)
            except msgspec.DecodeError:
                body = msg.data.decode("utf-8", "replace")
            version = headers.get(codec.H_VERSION, "")
            item = Item(
                seq=meta.sequence.stream, stream=meta.stream, subject=msg.subject, type=tag,
                version=int(version) if version.isdigit() else None,
                id=headers.get(codec.H_MSG_ID), occurred_at=headers.get(codec.H_OCCURRED_AT, ""),
                actor=headers.get(codec.H_ACTOR, "system"), event=body, error=exc.message,
            )  # fmt: skip
        else:
            item = Item(
                seq=envelope.sequence, stream=envelope.stream, subject=envelope.subject,
                type=envelope.type, version=envelope.version, id=envelope.event_id,
                occurred_at=envelope.occurred_at.isoformat(), actor=envelope.actor,
                event=msgspec.to_builtins(envelope.event),
            )  # fmt: skip
        if self.source.worktrees and msg.subject.startswith(self.registry_prefix):
            wid = item.event.get("worktree_id") if isinstance(item.event, dict) else None
            if wid not in self.source.worktrees:
                return None
        return item

    async def on_msg(self, msg: Msg) -> None:
        try:
            item = self.accept(msg)
        except Exception as exc:  # noqa: BLE001 - said, not dropped silently by nats-py
            notes.print(f"cannot read {msg.subject}: {exc!r}", markup=False, highlight=False)
            item = None
        if self.held is None:
            if item is not None:
                await self.put(item)
            return
        if item is not None:
            self.held.append(item)
        if msg.metadata.num_pending == 0:  # caught up: the last N, then everything live
            held, self.held = self.held, None
            for kept in held:
                await self.put(kept)


async def _connect(url: str) -> tuple[Client, Callable[[], None]]:
    """A connection that reconnects for ever once made, says so on stderr, and gives up on the
    first connection after a few seconds (nats-py alone would retry it for ever)."""
    from orrery.runtime import bus  # noqa: PLC0415 - see the module's docstring

    closing = False

    async def quiet(_: Exception) -> None:
        return None

    async def lost() -> None:
        if not closing:
            notes.print("[yellow]lost NATS; reconnecting …[/]")

    async def back() -> None:
        notes.print("[green]reconnected[/]")

    def close() -> None:
        nonlocal closing
        closing = True

    client = bus.OrreryClient()
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await client.connect(
                url,
                name="orrery-events-tail",
                connect_timeout=2,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,  # type: ignore[arg-type]  # seconds; int in the stubs
                allow_reconnect=True,
                error_cb=quiet,
                disconnected_cb=lost,
                reconnected_cb=back,
            )
    except TimeoutError:
        raise InfrastructureError(f"cannot reach NATS at {url}: is Orrery running?") from None
    return client, close


async def _consumer_config(js: JetStreamContext, source: Source, opts: Options) -> ConsumerConfig:
    from nats.js.api import ConsumerConfig, DeliverPolicy  # noqa: PLC0415
    from orrery.events import subjects  # noqa: PLC0415

    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.NEW if opts.last is None else DeliverPolicy.ALL,
        filter_subjects=source.subjects if len(source.subjects) > 1 else None,
    )
    if opts.from_start:
        config.deliver_policy = DeliverPolicy.ALL
    elif opts.last and not source.subjects and not opts.types:
        # A whole stream, nothing filtered on this side: its last N messages are the events.
        info = await js.stream_info(subjects.event_stream(source.context))
        if info.state.last_seq:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = max(info.state.first_seq, info.state.last_seq - opts.last + 1)
    return config


def _following(srcs: list[Source], opts: Options) -> str:
    from orrery.events import subjects  # noqa: PLC0415

    what = ", ".join(", ".join(s.subjects) or subjects.event_subjects(s.context) for s in srcs)
    when = (
        "from the start"
        if opts.from_start
        else f"the last {opts.last} of each stream, then new ones"
        if opts.last
        else "new events"
    )
    kinds = f" of type {', '.join(opts.types)}" if opts.types else ""
    return f"following {what}{kinds}: {when}; Ctrl-C stops"


async def tail(url: str, srcs: list[Source], opts: Options, registry: Registry) -> None:
    import nats.js.errors  # noqa: PLC0415 - see the module's docstring
    from msgspec import json as msgspec_json  # noqa: PLC0415
    from orrery.events import subjects  # noqa: PLC0415

    queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=QUEUE_MAX)
    nc, closing = await _connect(url)
    try:
        js = nc.jetstream()
        for source in srcs:
            stream = subjects.event_stream(source.context)
            feed = Feed(source, registry, opts, queue.put)
            try:
                await js.subscribe(
                    source.subjects[0]
                    if source.subjects
                    else subjects.event_subjects(source.context),
                    stream=stream,
                    ordered_consumer=True,
                    config=await _consumer_config(js, source, opts),
                    cb=feed.on_msg,
                )
            except nats.js.errors.NotFoundError:
                raise InfrastructureError(
                    f"no stream {stream} at {url}: has the {source.context} service run yet?"
                ) from None
        notes.print(_following(srcs, opts), soft_wrap=True, highlight=False, markup=False)
        printed = 0
        while opts.count is None or printed < opts.count:
            item = await queue.get()
            if opts.as_json:
                sys.stdout.write(msgspec_json.encode(item.as_json()).decode() + "\n")
                sys.stdout.flush()
            else:
                console.print(line(item), soft_wrap=True, highlight=False)
            printed += 1
    finally:
        closing()
        with contextlib.suppress(Exception):
            await nc.close()


@events_app.command("tail")
def events_tail(  # noqa: PLR0917 - typer maps each option to a parameter
    board: Annotated[
        list[str] | None,
        typer.Option(
            "--board", metavar="REF", help="a board's events (id, id prefix or slug; repeatable)"
        ),
    ] = None,
    session: Annotated[
        list[str] | None,
        typer.Option(
            "--session", metavar="REF", help="a session's events (id or id prefix; repeatable)"
        ),
    ] = None,
    worktree: Annotated[
        list[str] | None,
        typer.Option(
            "--worktree",
            metavar="REF",
            help="a worktree's events: lifecycle, environment, git state (id, id prefix, name"
            " or repo/name; repeatable)",
        ),
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            metavar="TAG",
            help="only events with this tag, e.g. canvas.CardMoved or 'canvas.Zone*' (repeatable)",
        ),
    ] = None,
    context: Annotated[
        list[str] | None,
        typer.Option(
            "--context",
            metavar="CONTEXT",
            help="every event of this context: canvas, sessions, worktrees or gateway (repeatable)",
        ),
    ] = None,
    from_start: bool = typer.Option(False, "--from-start", help="the whole log, then new events"),
    last: int | None = typer.Option(
        None, "--last", min=1, metavar="N", help="the last N events of each stream, then new ones"
    ),
    as_json: bool = typer.Option(
        False, "--json", help="one JSON object per line: seq, stream, subject, type, event …"
    ),
    count: int | None = typer.Option(
        None, "--count", min=1, hidden=True, help="stop after N events (for tests)"
    ),
) -> None:
    """Follow the event log live: one line per event (or one JSON object with --json).

    Without --board, --session, --worktree or --context it follows all four contexts (or, with
    --type, the contexts of those types). By default only new events; --last N or --from-start
    replay stored ones first. Ctrl-C stops."""
    from orrery.events import default_registry  # noqa: PLC0415 - see the module's docstring
    from orrery.events.subjects import CONTEXTS  # noqa: PLC0415

    if from_start and last is not None:
        raise typer.BadParameter("give --from-start or --last, not both", param_hint="--last")
    unknown = [c for c in context or [] if c not in CONTEXTS]
    if unknown:
        raise typer.BadParameter(
            f"{unknown[0]!r} is not one of {', '.join(CONTEXTS)}", param_hint="--context"
        )
    registry = default_registry()
    patterns = list(dict.fromkeys(types or []))
    type_contexts = _check_types(registry, patterns)
    try:
        ids = _resolve(board or [], session or [], worktree or [])
        contexts: set[str] = set(context or [])
        if not contexts and not ids:
            contexts = type_contexts if patterns else set(CONTEXTS)
        opts = Options(tuple(patterns), from_start, last, count, as_json)
        srcs = sources(contexts, ids)
        asyncio.run(tail(_nats_url(), srcs, opts, registry))
    except KeyboardInterrupt:
        return  # Ctrl-C: stop following, quietly
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
