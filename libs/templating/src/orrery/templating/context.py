"""The one template context shape (SPEC.md §3), shared by triggers, environments and schedules.

Agor had three shapes (`custom.*` in environments, `*.context.*` in triggers,
`worktree.custom_context` in schedules). Orrery has exactly this one: free-form user data always
lives under `<thing>.context`. Every top-level key is always present; an absent thing is `None`,
so `{% if session %}` works and `{{ session.title }}` without a session is an error.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "BoardCtx",
    "RepoCtx",
    "ScheduleCtx",
    "SessionCtx",
    "TemplateContext",
    "UserCtx",
    "WorktreeCtx",
    "ZoneCtx",
]


class RepoCtx(msgspec.Struct, frozen=True, kw_only=True):
    slug: str
    name: str
    default_branch: str
    remote_url: str | None = None
    path: str | None = None


class WorktreeCtx(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    ref: str
    path: str
    unique_id: int
    # The worktree's block of ports (10 of them once allocated): prefer `worktree.ports[0]` over
    # Agor-style arithmetic on `unique_id`.
    ports: list[int] = msgspec.field(default_factory=list)
    issue_url: str | None = None
    pull_request_url: str | None = None
    notes: str = ""
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class BoardCtx(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    slug: str
    description: str = ""
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class ZoneCtx(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    status: str | None = None


class SessionCtx(msgspec.Struct, frozen=True, kw_only=True):
    title: str | None = None
    description: str | None = None
    agentic_tool: str | None = None
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class ScheduleCtx(msgspec.Struct, frozen=True, kw_only=True):
    cron: str
    timezone: str = "UTC"
    # ISO-8601 UTC instant of the slot being run (the dedup key), and the 1-based run number.
    scheduled_at: str | None = None
    run_index: int | None = None
    retention: int = 0


class UserCtx(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    email: str | None = None
    role: str | None = None


class TemplateContext(msgspec.Struct, frozen=True, kw_only=True):
    repo: RepoCtx | None = None
    worktree: WorktreeCtx | None = None
    board: BoardCtx | None = None
    zone: ZoneCtx | None = None
    session: SessionCtx | None = None
    schedule: ScheduleCtx | None = None
    user: UserCtx | None = None

    def to_mapping(self) -> dict[str, Any]:
        """Plain builtins (dicts, lists, str, int, None) for Jinja; every top-level key present."""
        mapping = msgspec.to_builtins(self)
        assert isinstance(mapping, dict)
        return mapping


#: The names a template may use at top level (besides the environment's globals).
CONTEXT_NAMES: frozenset[str] = frozenset(TemplateContext.__struct_fields__)
