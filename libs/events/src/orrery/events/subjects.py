"""Every subject and stream name, as functions. No other module spells a subject literally.

Layout (one subject per aggregate, so ``Nats-Expected-Last-Subject-Sequence`` is per aggregate):

- events:       ``<ctx>.evt.<kind>.<id>``   in stream ``<CTX>_EVENTS``   (limits retention)
- commands:     ``<ctx>.cmd.<Name>``        in stream ``<CTX>_COMMANDS`` (work-queue retention)
- dead letters: ``<ctx>.dlq.<Name>``        in stream ``<CTX>_DLQ``      (limits retention)
- heartbeats:   ``orrery.heartbeat.<service>`` on core NATS (ephemeral)
- live:         ``<ctx>.live.<id>`` on core NATS (ephemeral: presence, cursors, drag frames)
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

from orrery.events.errors import InvalidToken

Context = Literal["canvas", "sessions", "worktrees", "gateway"]
CONTEXTS: Final[tuple[Context, ...]] = get_args(Context)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def token(value: str) -> str:
    """Check that ``value`` can stand as one subject token (no dots, wildcards or spaces)."""
    if not _TOKEN.fullmatch(value):
        raise InvalidToken(f"{value!r} cannot be used in a subject: use letters, digits, - and _")
    return value


def is_token(value: str) -> bool:
    return bool(_TOKEN.fullmatch(value))


def _context(ctx: str) -> str:
    if ctx not in CONTEXTS:
        raise InvalidToken(f"unknown context {ctx!r}; expected one of {', '.join(CONTEXTS)}")
    return ctx


def event_stream(ctx: str) -> str:
    return f"{_context(ctx).upper()}_EVENTS"


def command_stream(ctx: str) -> str:
    return f"{_context(ctx).upper()}_COMMANDS"


def dead_letter_stream(ctx: str) -> str:
    return f"{_context(ctx).upper()}_DLQ"


def event_subject(ctx: str, kind: str, aggregate_id: str) -> str:
    return f"{_context(ctx)}.evt.{token(kind)}.{token(aggregate_id)}"


def event_subjects(ctx: str, kind: str | None = None) -> str:
    """Wildcard over a context's events, or over one aggregate kind's."""
    if kind is None:
        return f"{_context(ctx)}.evt.>"
    return f"{_context(ctx)}.evt.{token(kind)}.*"


def command_subject(ctx: str, name: str) -> str:
    return f"{_context(ctx)}.cmd.{token(name)}"


def command_subjects(ctx: str) -> str:
    return f"{_context(ctx)}.cmd.>"


def dead_letter_subject(ctx: str, name: str) -> str:
    return f"{_context(ctx)}.dlq.{token(name)}"


def dead_letter_subjects(ctx: str) -> str:
    return f"{_context(ctx)}.dlq.>"


def rejection_subject(ctx: str, command_id: str) -> str:
    """Where a command's typed rejection is appended: one subject per rejected command."""
    return event_subject(ctx, "rejection", command_id)


def output_stream(ctx: str) -> str:
    """Short-retention output a live view can resume (environment logs, token deltas)."""
    return f"{_context(ctx).upper()}_OUTPUT"


def output_subject(ctx: str, kind: str, item_id: str) -> str:
    """``worktrees.out.log.<worktree_id>``."""
    return f"{_context(ctx)}.out.{token(kind)}.{token(item_id)}"


def output_subjects(ctx: str) -> str:
    return f"{_context(ctx)}.out.>"


def live_subject(ctx: str, item_id: str) -> str:
    """Core NATS (never stored): ``canvas.live.<board_id>`` presence, cursors and drag frames."""
    return f"{_context(ctx)}.live.{token(item_id)}"


def live_subjects(ctx: str) -> str:
    return f"{_context(ctx)}.live.*"


def heartbeat_subject(service: str) -> str:
    return f"orrery.heartbeat.{token(service)}"


def heartbeat_subjects() -> str:
    return "orrery.heartbeat.*"


def context_of_tag(tag: str) -> str:
    """``"canvas.CreateBoard"`` -> ``"canvas"``."""
    return _context(tag.split(".", 1)[0])


def name_of_tag(tag: str) -> str:
    """``"canvas.CreateBoard"`` -> ``"CreateBoard"``."""
    return token(tag.split(".", 1)[1])
