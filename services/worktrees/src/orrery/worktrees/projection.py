"""``worktrees.repos``, ``worktrees.worktrees`` and ``worktrees.environments``: the read model
the gateway's REST API and the CLI read (version 1). Columns are the contract the gateway
queries (documented in this service's README); JSON columns hold nested structures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import msgspec
from orrery.events import Envelope, Event, subjects
from orrery.events import worktrees as w

_json = msgspec.json.Encoder()


def _j(value: object) -> str:
    return _json.encode(value).decode()


@dataclass(frozen=True)
class WorktreesProjection:
    name: str = "catalog"
    version: int = 1
    schema: str = "worktrees"
    stream: str = subjects.event_stream("worktrees")
    subjects: Sequence[str] = (
        subjects.event_subjects("worktrees", "registry"),
        subjects.event_subjects("worktrees", "env"),
        subjects.event_subjects("worktrees", "gitstate"),
    )
    tables: Sequence[str] = ("repos", "worktrees", "environments")

    def ddl(self, schema: str) -> Sequence[str]:
        return [
            f"""CREATE TABLE "{schema}".repos (
                repo_id text PRIMARY KEY,
                slug text NOT NULL,
                source text NOT NULL,
                adopted boolean NOT NULL,
                status text NOT NULL,
                path text,
                default_branch text,
                remote_url text,
                settings jsonb,
                error text,
                external jsonb NOT NULL DEFAULT '[]',
                created_by text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                last_seq bigint NOT NULL
            )""",
            f'CREATE INDEX ON "{schema}".repos (slug)',
            f"""CREATE TABLE "{schema}".worktrees (
                worktree_id text PRIMARY KEY,
                repo_id text NOT NULL,
                name text NOT NULL,
                branch text NOT NULL,
                base text,
                base_ref text,
                new_branch boolean NOT NULL,
                status text NOT NULL,
                unique_id integer,
                ports integer[] NOT NULL DEFAULT '{{}}',
                path text,
                head_sha text,
                filesystem text NOT NULL DEFAULT 'preserved',
                files_removed integer NOT NULL DEFAULT 0,
                missing boolean NOT NULL DEFAULT false,
                issue_url text,
                pull_request_url text,
                notes text NOT NULL DEFAULT '',
                context jsonb NOT NULL DEFAULT '{{}}',
                environment jsonb,
                copied jsonb NOT NULL DEFAULT '[]',
                error text,
                git_branch text,
                git_sha text,
                git_dirty boolean,
                git_captured_at timestamptz,
                created_by text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                last_seq bigint NOT NULL
            )""",
            f'CREATE INDEX ON "{schema}".worktrees (repo_id, name)',
            f"""CREATE TABLE "{schema}".environments (
                worktree_id text PRIMARY KEY,
                status text NOT NULL DEFAULT 'stopped',
                detail text NOT NULL DEFAULT '',
                pid integer,
                ports integer[] NOT NULL DEFAULT '{{}}',
                app_url text,
                runner text NOT NULL DEFAULT 'process',
                health text NOT NULL DEFAULT 'unknown',
                health_message text NOT NULL DEFAULT '',
                last_error text,
                updated_at timestamptz NOT NULL,
                last_seq bigint NOT NULL
            )""",
        ]

    async def apply(  # noqa: PLR0912 - one branch per event type
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        repos, wts, envs = f'"{schema}".repos', f'"{schema}".worktrees', f'"{schema}".environments'
        for env in events:
            e, at, seq = env.event, env.occurred_at, env.sequence
            match e:
                case w.RepoAddRequested():
                    await conn.execute(
                        f"INSERT INTO {repos} (repo_id, slug, source, adopted, status, created_by,"
                        " created_at, updated_at, last_seq)"
                        " VALUES ($1,$2,$3,$4,'adding',$5,$6,$6,$7)"
                        " ON CONFLICT (repo_id) DO NOTHING",
                        e.repo_id, e.slug, e.source, e.adopt, env.actor, at, seq,
                    )  # fmt: skip
                case w.RepoAdded():
                    await conn.execute(
                        f"UPDATE {repos} SET status='ready', path=$2, default_branch=$3,"
                        " remote_url=$4, settings=$5::jsonb, error=NULL, updated_at=$6, last_seq=$7"
                        " WHERE repo_id=$1",
                        e.repo_id, e.path, e.default_branch, e.remote_url, _j(e.settings), at, seq,
                    )  # fmt: skip
                case w.RepoAddFailed():
                    await conn.execute(
                        f"UPDATE {repos} SET status='failed', error=$2, updated_at=$3, last_seq=$4"
                        " WHERE repo_id=$1",
                        e.repo_id, f"{e.code}: {e.message}", at, seq,
                    )  # fmt: skip
                case w.RepoConfigImported():
                    await conn.execute(
                        f"UPDATE {repos} SET settings=$2::jsonb, updated_at=$3, last_seq=$4"
                        " WHERE repo_id=$1",
                        e.repo_id, _j(e.settings), at, seq,
                    )  # fmt: skip
                case w.RepoRemoved():
                    await conn.execute(
                        f"UPDATE {repos} SET status='removed', updated_at=$2, last_seq=$3"
                        " WHERE repo_id=$1",
                        e.repo_id, at, seq,
                    )  # fmt: skip
                case w.ExternalWorktreesChanged():
                    await conn.execute(
                        f"UPDATE {repos} SET external=$2::jsonb, updated_at=$3, last_seq=$4"
                        " WHERE repo_id=$1",
                        e.repo_id, _j(e.worktrees), at, seq,
                    )  # fmt: skip
                case w.WorktreeRequested():
                    await conn.execute(
                        f"INSERT INTO {wts} (worktree_id, repo_id, name, branch, base, new_branch,"
                        " status, unique_id, ports, issue_url, pull_request_url, notes, context,"
                        " created_by, created_at, updated_at, last_seq) VALUES ($1,$2,$3,$4,$5,$6,"
                        "'creating',$7,$8,$9,$10,$11,$12::jsonb,$13,$14,$14,$15)"
                        " ON CONFLICT (worktree_id) DO NOTHING",
                        e.worktree_id, e.repo_id, e.name, e.branch, e.base, e.new_branch,
                        e.unique_id, e.ports, e.issue_url, e.pull_request_url, e.notes,
                        _j(e.context), env.actor, at, seq,
                    )  # fmt: skip
                    await conn.execute(
                        f"INSERT INTO {envs} (worktree_id, ports, updated_at, last_seq)"
                        " VALUES ($1, $2, $3, $4) ON CONFLICT (worktree_id) DO NOTHING",
                        e.worktree_id, e.ports, at, seq,
                    )  # fmt: skip
                case w.WorktreeCreated():
                    await conn.execute(
                        f"UPDATE {wts} SET status='active', path=$2, head_sha=$3, base_ref=$4,"
                        " environment=$5::jsonb, copied=$6::jsonb, updated_at=$7, last_seq=$8"
                        " WHERE worktree_id=$1",
                        e.worktree_id, e.path, e.head_sha, e.base_ref, _j(e.environment),
                        _j(e.copied), at, seq,
                    )  # fmt: skip
                case w.WorktreeCreationFailed():
                    await self._set(
                        conn, wts, e.worktree_id, at, seq, status="failed",
                        error=f"{e.code}: {e.message}", unique_id=None, ports=[],
                    )  # fmt: skip
                case w.WorktreeUpdated():
                    await conn.execute(
                        f"UPDATE {wts} SET issue_url=$2, pull_request_url=$3, notes=$4,"
                        " context=$5::jsonb, updated_at=$6, last_seq=$7 WHERE worktree_id=$1",
                        e.worktree_id, e.issue_url, e.pull_request_url, e.notes, _j(e.context),
                        at, seq,
                    )  # fmt: skip
                case w.WorktreeArchiveRequested():
                    await self._set(
                        conn, wts, e.worktree_id, at, seq, status="archiving",
                        filesystem=e.filesystem,
                    )  # fmt: skip
                case w.WorktreeArchived():
                    await self._set(
                        conn, wts, e.worktree_id, at, seq, status="archived",
                        filesystem=e.filesystem, files_removed=e.files_removed,
                        unique_id=None, ports=[],
                    )  # fmt: skip
                case w.WorktreeUnarchived():
                    await self._set(
                        conn, wts, e.worktree_id, at, seq, status="active",
                        filesystem="preserved", unique_id=e.unique_id, ports=e.ports,
                    )  # fmt: skip
                    await conn.execute(
                        f"UPDATE {envs} SET ports=$2, updated_at=$3, last_seq=$4"
                        " WHERE worktree_id=$1",
                        e.worktree_id, e.ports, at, seq,
                    )  # fmt: skip
                case w.WorktreeDeleteRequested():
                    await self._set(conn, wts, e.worktree_id, at, seq, status="deleting")
                case w.WorktreeDeleted():
                    await self._set(
                        conn, wts, e.worktree_id, at, seq, status="deleted", unique_id=None,
                        ports=[],
                    )  # fmt: skip
                case w.WorktreeMissingOnDisk():
                    await self._set(conn, wts, e.worktree_id, at, seq, missing=True)
                case w.WorktreeFoundOnDisk():
                    await self._set(conn, wts, e.worktree_id, at, seq, missing=False)
                case w.GitStateCaptured() if e.error is None:
                    await conn.execute(
                        f"UPDATE {wts} SET git_branch=$2, git_sha=$3, git_dirty=$4,"
                        " git_captured_at=$5 WHERE worktree_id=$1",
                        e.worktree_id, e.branch, e.sha, e.dirty, at,
                    )  # fmt: skip
                case w.EnvironmentStatusChanged():
                    await conn.execute(
                        f"UPDATE {envs} SET status=$2, detail=$3, pid=$4, ports=$5, app_url=$6,"
                        " runner=$7, health = CASE WHEN $2 IN ('starting','running')"
                        " THEN health ELSE 'unknown' END, updated_at=$8, last_seq=$9"
                        " WHERE worktree_id=$1",
                        e.worktree_id, e.status, e.detail, e.pid, e.ports, e.app_url, e.runner,
                        at, seq,
                    )  # fmt: skip
                case w.EnvironmentStartFailed():
                    await conn.execute(
                        f"UPDATE {envs} SET last_error=$2, updated_at=$3, last_seq=$4"
                        " WHERE worktree_id=$1",
                        e.worktree_id, f"{e.code}: {e.message}", at, seq,
                    )  # fmt: skip
                case w.EnvironmentHealthChanged():
                    await conn.execute(
                        f"UPDATE {envs} SET health=$2, health_message=$3, updated_at=$4,"
                        " last_seq=$5 WHERE worktree_id=$1",
                        e.worktree_id, e.health, e.message, at, seq,
                    )  # fmt: skip

    @staticmethod
    async def _set(
        conn: asyncpg.Connection,
        table: str,
        worktree_id: str,
        at: object,
        seq: int,
        **columns: object,
    ) -> None:
        names = list(columns)
        sets = ", ".join(f"{name}=${i}" for i, name in enumerate(names, start=4))
        await conn.execute(
            f"UPDATE {table} SET {sets}, updated_at=$2, last_seq=$3 WHERE worktree_id=$1",
            worktree_id,
            at,
            seq,
            *columns.values(),
        )
