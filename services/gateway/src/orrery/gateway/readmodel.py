"""Queries on the worktrees service's read model (schema ``worktrees``, documented in its
README). The gateway only reads these tables; every change goes through a command."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from orrery.gateway.errors import ApiError

SCHEMA = "worktrees"
PROJECTION = "catalog"
_decode = msgspec.json.decode


class EnvOut(msgspec.Struct, frozen=True, kw_only=True):
    status: str
    detail: str
    pid: int | None
    ports: list[int]
    app_url: str | None
    runner: str
    health: str
    health_message: str
    last_error: str | None
    updated_at: datetime


class GitOut(msgspec.Struct, frozen=True, kw_only=True):
    branch: str | None
    sha: str | None
    dirty: bool | None
    captured_at: datetime


class RepoOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    slug: str
    source: str
    adopted: bool
    status: str
    path: str | None
    default_branch: str | None
    remote_url: str | None
    environment: dict[str, Any] | None
    copy: list[str]
    config_source: str
    config_error: str | None
    error: str | None
    external_worktrees: list[dict[str, Any]]
    created_by: str
    created_at: datetime
    updated_at: datetime


class WorktreeOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    repo_id: str
    repo_slug: str
    name: str
    branch: str
    base: str | None
    base_ref: str | None
    status: str
    unique_id: int | None
    ports: list[int]
    path: str | None
    head_sha: str | None
    filesystem: str
    files_removed: int
    missing: bool
    issue_url: str | None
    pull_request_url: str | None
    notes: str
    context: dict[str, Any]
    copied: list[str]
    error: str | None
    env_configured: bool
    env: EnvOut | None
    git: GitOut | None
    created_by: str
    created_at: datetime
    updated_at: datetime


def repo_out(row: asyncpg.Record) -> RepoOut:
    settings = _decode(row["settings"]) if row["settings"] else {}
    return RepoOut(
        id=row["repo_id"],
        slug=row["slug"],
        source=row["source"],
        adopted=row["adopted"],
        status=row["status"],
        path=row["path"],
        default_branch=row["default_branch"],
        remote_url=row["remote_url"],
        environment=settings.get("environment"),
        copy=settings.get("copy", []),
        config_source=settings.get("source", ""),
        config_error=settings.get("error"),
        error=row["error"],
        external_worktrees=_decode(row["external"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def worktree_out(row: asyncpg.Record) -> WorktreeOut:
    env = None
    if row["env_status"] is not None:
        env = EnvOut(
            status=row["env_status"],
            detail=row["env_detail"],
            pid=row["env_pid"],
            ports=list(row["env_ports"]),
            app_url=row["env_app_url"],
            runner=row["env_runner"],
            health=row["env_health"],
            health_message=row["env_health_message"],
            last_error=row["env_last_error"],
            updated_at=row["env_updated_at"],
        )
    git = None
    if row["git_captured_at"] is not None:
        git = GitOut(
            branch=row["git_branch"],
            sha=row["git_sha"],
            dirty=row["git_dirty"],
            captured_at=row["git_captured_at"],
        )
    environment = _decode(row["environment"]) if row["environment"] else None
    return WorktreeOut(
        id=row["worktree_id"],
        repo_id=row["repo_id"],
        repo_slug=row["slug"],
        name=row["name"],
        branch=row["branch"],
        base=row["base"],
        base_ref=row["base_ref"],
        status=row["status"],
        unique_id=row["unique_id"],
        ports=list(row["ports"]),
        path=row["path"],
        head_sha=row["head_sha"],
        filesystem=row["filesystem"],
        files_removed=row["files_removed"],
        missing=row["missing"],
        issue_url=row["issue_url"],
        pull_request_url=row["pull_request_url"],
        notes=row["notes"],
        context=_decode(row["context"]),
        copied=_decode(row["copied"]),
        error=row["error"],
        env_configured=environment is not None,
        env=env,
        git=git,
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_WORKTREES = f"""
    SELECT w.*, r.slug,
        e.status AS env_status, e.detail AS env_detail, e.pid AS env_pid, e.ports AS env_ports,
        e.app_url AS env_app_url, e.runner AS env_runner, e.health AS env_health,
        e.health_message AS env_health_message, e.last_error AS env_last_error,
        e.updated_at AS env_updated_at
    FROM "{SCHEMA}".worktrees w
    JOIN "{SCHEMA}".repos r USING (repo_id)
    LEFT JOIN "{SCHEMA}".environments e USING (worktree_id)
"""


async def projection_position(pool: asyncpg.Pool, schema: str, name: str) -> int:
    try:
        value = await pool.fetchval(
            f'SELECT last_seq FROM "{schema}".orrery_projections WHERE name = $1', name
        )
    except asyncpg.UndefinedTableError:
        return 0  # the owning service has not created its read model yet
    return int(value or 0)


async def caught_up(
    pool: asyncpg.Pool, schema: str, name: str, sequence: int, timeout: float = 10.0
) -> None:
    """Read your writes: wait until projection ``schema.name`` has applied ``sequence``."""
    if sequence <= 0:
        return
    try:
        async with asyncio.timeout(timeout):
            # The checkpoint lives in another service's transaction: poll it (cheap, indexed).
            while await projection_position(pool, schema, name) < sequence:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise ApiError(
            503, "readmodel.lagging", "the change is recorded but not yet readable; retry"
        ) from None


class WorktreesReadModel:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        try:
            return list(await self._pool.fetch(sql, *args))
        except asyncpg.UndefinedTableError:
            return []  # the worktrees service has not created its read model yet

    async def caught_up(self, sequence: int, timeout: float = 10.0) -> None:
        """Read your writes: wait until the read model has applied ``sequence``."""
        await caught_up(self._pool, SCHEMA, PROJECTION, sequence, timeout)

    # -- repos -------------------------------------------------------------------------------

    async def repos(self, *, include_gone: bool = False) -> list[RepoOut]:
        where = "" if include_gone else "WHERE status IN ('adding', 'ready')"
        rows = await self._fetch(
            f'SELECT * FROM "{SCHEMA}".repos {where} ORDER BY slug, created_at'
        )
        return [repo_out(r) for r in rows]

    async def repo(self, ref: str) -> RepoOut:
        rows = await self._fetch(
            f'SELECT * FROM "{SCHEMA}".repos WHERE repo_id = $1'
            " OR (status IN ('adding', 'ready') AND (slug = $1 OR left(repo_id, length($1)) = $1))",
            ref,
        )
        return repo_out(_one(rows, "repo", ref, key="repo_id"))

    # -- worktrees ---------------------------------------------------------------------------

    async def worktrees(
        self, *, repo_id: str | None = None, archived: bool = False, include_gone: bool = False
    ) -> list[WorktreeOut]:
        states = ["creating", "active", "archiving", "deleting"]
        if archived or include_gone:
            states.append("archived")
        if include_gone:
            states += ["deleted", "failed"]
        rows = await self._fetch(
            _WORKTREES
            + " WHERE w.status = ANY($1::text[]) AND ($2::text IS NULL OR w.repo_id = $2)"
            " ORDER BY r.slug, w.name, w.created_at",
            states,
            repo_id,
        )
        return [worktree_out(r) for r in rows]

    async def worktree(self, ref: str) -> WorktreeOut:
        """By id, unique id prefix, ``name`` or ``repo-slug/name`` (live worktrees)."""
        rows = await self._fetch(
            _WORKTREES + " WHERE w.worktree_id = $1 OR (w.status NOT IN ('deleted', 'failed')"
            " AND (w.name = $1 OR r.slug || '/' || w.name = $1"
            " OR left(w.worktree_id, length($1)) = $1))",
            ref,
        )
        return worktree_out(_one(rows, "worktree", ref, key="worktree_id"))


def _one(rows: list[asyncpg.Record], what: str, ref: str, *, key: str) -> asyncpg.Record:
    exact = [r for r in rows if r[key] == ref]
    if exact:
        return exact[0]
    if not rows:
        raise ApiError(404, f"{what}.not_found", f"no {what} {ref!r}")
    if len(rows) > 1:
        raise ApiError(
            409,
            f"{what}.ambiguous",
            f"{ref!r} matches {len(rows)} {what}s: give more of the id (or repo/name)",
            {"matches": [r[key] for r in rows]},
        )
    return rows[0]
