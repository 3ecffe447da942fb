"""The canvas service's copy of the repos and worktrees it renders zone triggers for
(``worktree_info`` v1, schema ``canvas``), from the worktrees log: the canvas learns them through
JetStream, never from another service's schema.

``repos``: status ``active`` or ``removed``; a repo appears once it was added (cloned or adopted).
``worktrees``: status ``requested``, ``active``, ``archived``, ``deleted`` or ``failed``; ``path``
is known from ``active`` on; ``unique_id`` and ``ports`` are released (NULL, ``[]``) while archived,
deleted or failed, as in the worktrees service's own read model. JSON columns are text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
from orrery.events import Envelope, Event, subjects
from orrery.events import worktrees as w
from orrery.templating import RepoCtx, WorktreeCtx

_json = msgspec.json.Encoder()
_decode = msgspec.json.decode


def _j(value: object) -> str:
    return _json.encode(value).decode()


@dataclass(frozen=True)
class WorktreeInfoProjection:
    name: str = "worktree_info"
    version: int = 1
    schema: str = "canvas"
    stream: str = subjects.event_stream("worktrees")
    subjects: Sequence[str] = (subjects.event_subjects("worktrees", "registry"),)
    tables: Sequence[str] = ("repos", "worktrees")

    def ddl(self, schema: str) -> Sequence[str]:
        q = f'"{schema}"'
        return [
            f"""CREATE TABLE {q}.repos (
                repo_id text PRIMARY KEY,
                slug text NOT NULL,
                path text,
                default_branch text,
                remote_url text,
                status text NOT NULL
            )""",
            f"""CREATE TABLE {q}.worktrees (
                worktree_id text PRIMARY KEY,
                repo_id text NOT NULL,
                name text NOT NULL,
                branch text NOT NULL,
                path text,
                unique_id integer,
                ports text NOT NULL DEFAULT '[]',
                issue_url text,
                pull_request_url text,
                notes text NOT NULL DEFAULT '',
                context text NOT NULL DEFAULT '{{}}',
                status text NOT NULL
            )""",
        ]

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        repos, wts = f'"{schema}".repos', f'"{schema}".worktrees'
        for env in events:
            e = env.event
            match e:
                case w.RepoAdded():
                    await conn.execute(
                        f"INSERT INTO {repos} VALUES ($1, $2, $3, $4, $5, 'active')"
                        " ON CONFLICT (repo_id) DO UPDATE SET slug = $2, path = $3,"
                        " default_branch = $4, remote_url = $5, status = 'active'",
                        e.repo_id, e.slug, e.path, e.default_branch, e.remote_url,
                    )  # fmt: skip
                case w.RepoRemoved():
                    await conn.execute(
                        f"UPDATE {repos} SET status = 'removed' WHERE repo_id = $1", e.repo_id
                    )
                case w.WorktreeRequested():
                    await conn.execute(
                        f"INSERT INTO {wts} VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9,"
                        " $10, 'requested') ON CONFLICT (worktree_id) DO NOTHING",
                        e.worktree_id, e.repo_id, e.name, e.branch, e.unique_id, _j(e.ports),
                        e.issue_url, e.pull_request_url, e.notes, _j(e.context),
                    )  # fmt: skip
                case w.WorktreeCreated():
                    await conn.execute(
                        f"UPDATE {wts} SET status = 'active', path = $2, branch = $3"
                        " WHERE worktree_id = $1",
                        e.worktree_id, e.path, e.branch,
                    )  # fmt: skip
                case w.WorktreeCreationFailed():
                    await self._released(conn, wts, e.worktree_id, "failed")
                case w.WorktreeUpdated():
                    await conn.execute(
                        f"UPDATE {wts} SET issue_url = $2, pull_request_url = $3, notes = $4,"
                        " context = $5 WHERE worktree_id = $1",
                        e.worktree_id, e.issue_url, e.pull_request_url, e.notes, _j(e.context),
                    )  # fmt: skip
                case w.WorktreeArchived():
                    await self._released(conn, wts, e.worktree_id, "archived")
                case w.WorktreeUnarchived():
                    await conn.execute(
                        f"UPDATE {wts} SET status = 'active', unique_id = $2, ports = $3"
                        " WHERE worktree_id = $1",
                        e.worktree_id, e.unique_id, _j(e.ports),
                    )  # fmt: skip
                case w.WorktreeDeleted():
                    await self._released(conn, wts, e.worktree_id, "deleted")

    @staticmethod
    async def _released(
        conn: asyncpg.Connection, table: str, worktree_id: str, status: str
    ) -> None:
        await conn.execute(
            f"UPDATE {table} SET status = $2, unique_id = NULL, ports = '[]'"
            " WHERE worktree_id = $1",
            worktree_id,
            status,
        )


async def template_subjects(
    pool: asyncpg.Pool, worktree_id: str, schema: str = "canvas"
) -> tuple[RepoCtx, WorktreeCtx] | None:
    """The ``repo`` and ``worktree`` of a template's context (SPEC §3) for a worktree, or None
    while it is unknown here (not in the copy yet, its path not known yet: still being created,
    or its creation failed) or the copy's tables do not exist yet.

    ``repo.name`` is the repo's slug; ``worktree.ref`` is its branch; a released ``unique_id``
    (archived or deleted worktree) reads as 0 with no ports."""
    try:
        row = await pool.fetchrow(
            "SELECT w.*, r.slug, r.path AS repo_path, r.default_branch, r.remote_url"
            f' FROM "{schema}".worktrees w LEFT JOIN "{schema}".repos r USING (repo_id)'
            " WHERE w.worktree_id = $1",
            worktree_id,
        )
    except asyncpg.UndefinedTableError:
        return None
    if row is None or row["path"] is None:
        return None
    slug = row["slug"] or row["repo_id"]
    repo = RepoCtx(
        slug=slug,
        name=slug,
        default_branch=row["default_branch"] or "",
        remote_url=row["remote_url"],
        path=row["repo_path"],
    )
    context: dict[str, Any] = _decode(row["context"])
    worktree = WorktreeCtx(
        name=row["name"],
        ref=row["branch"],
        path=row["path"],
        unique_id=row["unique_id"] or 0,
        ports=_decode(row["ports"]),
        issue_url=row["issue_url"],
        pull_request_url=row["pull_request_url"],
        notes=row["notes"],
        context=context,
    )
    return repo, worktree
