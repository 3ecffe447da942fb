"""The sessions read model (``catalog`` v1: sessions, tasks, messages, permissions, the token and
cost ledger) and the service's copy of where worktrees live (``worktree_paths`` v1, from the
worktrees log: the sessions service learns it through JetStream, never from another schema)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import msgspec
from orrery.events import Envelope, Event, subjects
from orrery.events import gateway as g
from orrery.events import sessions as s
from orrery.events import worktrees as w

_json = msgspec.json.Encoder()


def _j(value: object) -> str:
    return _json.encode(value).decode()


@dataclass(frozen=True)
class SessionsProjection:
    name: str = "catalog"
    version: int = 2  # 2: sessions.native_id
    schema: str = "sessions"
    stream: str = subjects.event_stream("sessions")
    subjects: Sequence[str] = (subjects.event_subjects("sessions", "session"),)
    tables: Sequence[str] = ("sessions", "tasks", "messages", "permissions")

    def ddl(self, schema: str) -> Sequence[str]:
        q = f'"{schema}"'
        return [
            f"""CREATE TABLE {q}.sessions (
                session_id text PRIMARY KEY,
                worktree_id text NOT NULL,
                board_id text,
                title text NOT NULL,
                settings jsonb NOT NULL,
                relation text NOT NULL,
                parent_id text,
                fork_point integer,
                native_id text,
                status text NOT NULL DEFAULT 'idle',
                active_task text,
                queue jsonb NOT NULL DEFAULT '[]',
                message_count integer NOT NULL DEFAULT 0,
                input_tokens bigint NOT NULL DEFAULT 0,
                output_tokens bigint NOT NULL DEFAULT 0,
                cost_usd double precision NOT NULL DEFAULT 0,
                deleted boolean NOT NULL DEFAULT false,
                created_by text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                last_seq bigint NOT NULL
            )""",
            f"CREATE INDEX ON {q}.sessions (parent_id)",
            f"CREATE INDEX ON {q}.sessions (worktree_id)",
            f"""CREATE TABLE {q}.tasks (
                task_id text PRIMARY KEY,
                session_id text NOT NULL,
                prompt text NOT NULL,
                status text NOT NULL,
                queue_position integer,
                model text,
                input_tokens bigint NOT NULL DEFAULT 0,
                output_tokens bigint NOT NULL DEFAULT 0,
                cache_read_tokens bigint NOT NULL DEFAULT 0,
                cache_write_tokens bigint NOT NULL DEFAULT 0,
                cost_usd double precision NOT NULL DEFAULT 0,
                raw_usage jsonb,
                git_start jsonb,
                git_end jsonb,
                error text,
                result text,
                duration_ms integer,
                created_by text NOT NULL,
                created_at timestamptz NOT NULL,
                started_at timestamptz,
                ended_at timestamptz,
                last_seq bigint NOT NULL
            )""",
            f"CREATE INDEX ON {q}.tasks (session_id, created_at)",
            f"""CREATE TABLE {q}.messages (
                session_id text NOT NULL,
                index integer NOT NULL,
                message_id text NOT NULL,
                task_id text NOT NULL,
                role text NOT NULL,
                blocks jsonb NOT NULL,
                model text,
                created_at timestamptz NOT NULL,
                seq bigint NOT NULL,
                PRIMARY KEY (session_id, index)
            )""",
            f"""CREATE TABLE {q}.permissions (
                request_id text PRIMARY KEY,
                session_id text NOT NULL,
                task_id text NOT NULL,
                tool text NOT NULL,
                input jsonb NOT NULL,
                deadline timestamptz NOT NULL,
                status text NOT NULL DEFAULT 'pending',
                scope text,
                decided_by text,
                reason text,
                created_at timestamptz NOT NULL
            )""",
            f"CREATE INDEX ON {q}.permissions (session_id, status)",
        ]

    async def apply(  # noqa: PLR0912, PLR0915 - one branch per event type
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        q = f'"{schema}"'
        for env in events:
            e, at, seq = env.event, env.occurred_at, env.sequence
            match e:
                case s.SessionCreated():
                    await conn.execute(
                        f"INSERT INTO {q}.sessions (session_id, worktree_id, board_id, title,"
                        " settings, relation, parent_id, fork_point, message_count, created_by,"
                        " created_at, updated_at, last_seq)"
                        " VALUES ($1,$2,$3,$4,$5::jsonb,$6,$7,$8,$9,$10,$11,$11,$12)"
                        " ON CONFLICT (session_id) DO NOTHING",
                        e.session_id, e.worktree_id, e.board_id, e.title, _j(e.settings),
                        e.relation, e.parent_id, e.fork_point, e.fork_point or 0, env.actor,
                        at, seq,
                    )  # fmt: skip
                case s.TaskQueued():
                    await conn.execute(
                        f"INSERT INTO {q}.tasks (task_id, session_id, prompt, status, created_by,"
                        " created_at, last_seq) VALUES ($1,$2,$3,'queued',$4,$5,$6)"
                        " ON CONFLICT (task_id) DO NOTHING",
                        e.task_id, e.session_id, e.prompt, env.actor, at, seq,
                    )  # fmt: skip
                    await self._queue(conn, q, e.session_id, at, seq)
                case s.QueuedTaskRemoved():
                    await conn.execute(
                        f"UPDATE {q}.tasks SET status='removed', queue_position=NULL, last_seq=$2"
                        " WHERE task_id=$1",
                        e.task_id, seq,
                    )  # fmt: skip
                    await self._queue(conn, q, e.session_id, at, seq)
                case s.QueueReordered():
                    for position, task_id in enumerate(e.task_ids):
                        await conn.execute(
                            f"UPDATE {q}.tasks SET queue_position=$2 WHERE task_id=$1",
                            task_id,
                            position,
                        )
                    await self._queue(conn, q, e.session_id, at, seq)
                case s.TaskStarted():
                    await conn.execute(
                        f"INSERT INTO {q}.tasks (task_id, session_id, prompt, status, created_by,"
                        " created_at, started_at, last_seq) VALUES ($1,$2,$3,'running',$4,$5,$5,$6)"
                        " ON CONFLICT (task_id) DO UPDATE SET status='running',"
                        " queue_position=NULL, started_at=$5, ended_at=NULL, last_seq=$6",
                        e.task_id, e.session_id, e.prompt, env.actor, at, seq,
                    )  # fmt: skip
                    await conn.execute(
                        f"UPDATE {q}.sessions SET status='running', active_task=$2,"
                        " updated_at=$3, last_seq=$4 WHERE session_id=$1",
                        e.session_id, e.task_id, at, seq,
                    )  # fmt: skip
                    await self._queue(conn, q, e.session_id, at, seq)
                case s.MessageRecorded():
                    await conn.execute(
                        f"INSERT INTO {q}.messages VALUES ($1,$2,$3,$4,$5,$6::jsonb,$7,$8,$9)"
                        " ON CONFLICT (session_id, index) DO NOTHING",
                        e.session_id, e.index, e.message_id, e.task_id, e.role, _j(e.blocks),
                        e.model, at, seq,
                    )  # fmt: skip
                    await conn.execute(
                        f"UPDATE {q}.sessions SET message_count=GREATEST(message_count, $2),"
                        " updated_at=$3, last_seq=$4 WHERE session_id=$1",
                        e.session_id, e.index + 1, at, seq,
                    )  # fmt: skip
                case s.AgentSessionBound():
                    await conn.execute(
                        f"UPDATE {q}.sessions SET native_id=$2, updated_at=$3, last_seq=$4"
                        " WHERE session_id=$1",
                        e.session_id, e.native_id, at, seq,
                    )  # fmt: skip
                case s.TaskGitState():
                    column = "git_start" if e.moment == "start" else "git_end"
                    await conn.execute(
                        f"UPDATE {q}.tasks SET {column}=$2::jsonb WHERE task_id=$1",
                        e.task_id,
                        _j(e.git),
                    )
                case s.PermissionRequested():
                    await conn.execute(
                        f"INSERT INTO {q}.permissions (request_id, session_id, task_id, tool,"
                        " input, deadline, created_at) VALUES ($1,$2,$3,$4,$5::jsonb,$6,$7)"
                        " ON CONFLICT (request_id) DO NOTHING",
                        e.request_id, e.session_id, e.task_id, e.tool, _j(e.input), e.deadline,
                        at,
                    )  # fmt: skip
                    await self._status(conn, q, e.session_id, "awaiting_permission", at, seq)
                case s.PermissionDecided():
                    await conn.execute(
                        f"UPDATE {q}.permissions SET status=$2, scope=$3, decided_by=$4,"
                        " reason=$5 WHERE request_id=$1",
                        e.request_id, "approved" if e.allow else "denied", e.scope,
                        e.decided_by, e.reason,
                    )  # fmt: skip
                    await conn.execute(
                        f"UPDATE {q}.sessions SET status='running' WHERE session_id=$1"
                        f" AND status='awaiting_permission' AND NOT EXISTS (SELECT 1 FROM"
                        f" {q}.permissions WHERE session_id=$1 AND status='pending')",
                        e.session_id,
                    )
                case s.StopRequested():
                    await conn.execute(
                        f"UPDATE {q}.tasks SET status='stopping' WHERE task_id=$1", e.task_id
                    )
                    await self._status(conn, q, e.session_id, "stopping", at, seq)
                case s.TaskCompleted():
                    u = e.usage
                    await conn.execute(
                        f"UPDATE {q}.tasks SET status='completed', model=$2, input_tokens=$3,"
                        " output_tokens=$4, cache_read_tokens=$5, cache_write_tokens=$6,"
                        " cost_usd=$7, raw_usage=$8::jsonb, result=$9, duration_ms=$10,"
                        " ended_at=$11, last_seq=$12 WHERE task_id=$1",
                        e.task_id, e.model, u.input_tokens, u.output_tokens,
                        u.cache_read_tokens, u.cache_write_tokens, e.cost_usd,
                        _j(e.raw_usage), e.result, e.duration_ms, at, seq,
                    )  # fmt: skip
                    await conn.execute(
                        f"UPDATE {q}.sessions SET input_tokens=input_tokens+$2,"
                        " output_tokens=output_tokens+$3, cost_usd=cost_usd+$4"
                        " WHERE session_id=$1",
                        e.session_id, u.input_tokens, u.output_tokens, e.cost_usd,
                    )  # fmt: skip
                    await self._ended(conn, q, e.session_id, e.task_id, at, seq)
                case s.TaskFailed():
                    await conn.execute(
                        f"UPDATE {q}.tasks SET status='failed', error=$2, cost_usd=$3,"
                        " ended_at=$4, last_seq=$5 WHERE task_id=$1",
                        e.task_id, f"{e.code}: {e.message}", e.cost_usd, at, seq,
                    )  # fmt: skip
                    await self._ended(conn, q, e.session_id, e.task_id, at, seq)
                case s.TaskStopped():
                    await conn.execute(
                        f"UPDATE {q}.tasks SET status='stopped', ended_at=$2, last_seq=$3"
                        " WHERE task_id=$1",
                        e.task_id, at, seq,
                    )  # fmt: skip
                    await self._ended(conn, q, e.session_id, e.task_id, at, seq)
                case s.TaskInterrupted():
                    await conn.execute(
                        f"UPDATE {q}.tasks SET status='interrupted', error=$2, ended_at=$3,"
                        " last_seq=$4 WHERE task_id=$1",
                        e.task_id, e.reason, at, seq,
                    )  # fmt: skip
                    await self._ended(conn, q, e.session_id, e.task_id, at, seq)
                case s.SessionUpdated():
                    await conn.execute(
                        f"UPDATE {q}.sessions SET title=$2, settings=$3::jsonb, updated_at=$4,"
                        " last_seq=$5 WHERE session_id=$1",
                        e.session_id, e.title, _j(e.settings), at, seq,
                    )  # fmt: skip
                case s.SessionDeleted():
                    await conn.execute(
                        f"UPDATE {q}.sessions SET deleted=true, active_task=NULL, status='idle',"
                        " updated_at=$2, last_seq=$3 WHERE session_id=$1",
                        e.session_id, at, seq,
                    )  # fmt: skip
                    if e.children == "orphan":
                        await conn.execute(
                            f"UPDATE {q}.sessions SET parent_id=NULL, relation='root'"
                            " WHERE parent_id=$1",
                            e.session_id,
                        )

    @staticmethod
    async def _queue(
        conn: asyncpg.Connection, q: str, session_id: str, at: object, seq: int
    ) -> None:
        """Renumber the session's queue from its queued tasks' order of arrival or reorder."""
        rows = await conn.fetch(
            f"SELECT task_id FROM {q}.tasks WHERE session_id=$1 AND status='queued'"
            " ORDER BY queue_position NULLS LAST, created_at, last_seq",
            session_id,
        )
        order = [r["task_id"] for r in rows]
        for position, task_id in enumerate(order):
            await conn.execute(
                f"UPDATE {q}.tasks SET queue_position=$2 WHERE task_id=$1", task_id, position
            )
        await conn.execute(
            f"UPDATE {q}.sessions SET queue=$2::jsonb, updated_at=$3, last_seq=$4"
            " WHERE session_id=$1",
            session_id,
            _j(order),
            at,
            seq,
        )

    @staticmethod
    async def _status(  # noqa: PLR0917 - one row's columns
        conn: asyncpg.Connection, q: str, session_id: str, status: str, at: object, seq: int
    ) -> None:
        await conn.execute(
            f"UPDATE {q}.sessions SET status=$2, updated_at=$3, last_seq=$4 WHERE session_id=$1",
            session_id,
            status,
            at,
            seq,
        )

    async def _ended(  # noqa: PLR0917 - one row's columns
        self, conn: asyncpg.Connection, q: str, session_id: str, task_id: str, at: object, seq: int
    ) -> None:
        await conn.execute(
            f"UPDATE {q}.sessions SET status='idle', active_task=NULL, updated_at=$3,"
            " last_seq=$4 WHERE session_id=$1 AND active_task=$2",
            session_id,
            task_id,
            at,
            seq,
        )
        await conn.execute(
            f"UPDATE {q}.permissions SET status='denied', reason='task ended'"
            " WHERE task_id=$1 AND status='pending'",
            task_id,
        )


@dataclass(frozen=True)
class WorktreePathsProjection:
    name: str = "worktree_paths"
    version: int = 1
    schema: str = "sessions"
    stream: str = subjects.event_stream("worktrees")
    subjects: Sequence[str] = (subjects.event_subjects("worktrees", "registry"),)
    tables: Sequence[str] = ("worktree_paths",)

    def ddl(self, schema: str) -> Sequence[str]:
        return [
            f"""CREATE TABLE "{schema}".worktree_paths (
                worktree_id text PRIMARY KEY,
                repo_id text NOT NULL,
                path text,
                status text NOT NULL
            )"""
        ]

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        table = f'"{schema}".worktree_paths'
        for env in events:
            e = env.event
            match e:
                case w.WorktreeCreated():
                    await conn.execute(
                        f"INSERT INTO {table} VALUES ($1, $2, $3, 'active')"
                        " ON CONFLICT (worktree_id) DO UPDATE SET path=$3, status='active'",
                        e.worktree_id,
                        e.repo_id,
                        e.path,
                    )
                case w.WorktreeArchived():
                    await conn.execute(
                        f"UPDATE {table} SET status='archived' WHERE worktree_id=$1",
                        e.worktree_id,
                    )
                case w.WorktreeUnarchived():
                    await conn.execute(
                        f"UPDATE {table} SET status='active' WHERE worktree_id=$1", e.worktree_id
                    )
                case w.WorktreeDeleted():
                    await conn.execute(
                        f"UPDATE {table} SET status='deleted' WHERE worktree_id=$1",
                        e.worktree_id,
                    )


@dataclass(frozen=True)
class UserSecretsProjection:
    """``user_secrets`` v1: the sealed API keys and environment variables users set, from the
    gateway's log. Still sealed here; the runner opens a session creator's into that agent's
    process and nowhere else (never a log line, never an event)."""

    name: str = "user_secrets"
    version: int = 1
    schema: str = "sessions"
    stream: str = subjects.event_stream("gateway")
    subjects: Sequence[str] = (subjects.event_subjects("gateway", "user"),)
    tables: Sequence[str] = ("user_secrets",)

    def ddl(self, schema: str) -> Sequence[str]:
        return [
            f"""CREATE TABLE "{schema}".user_secrets (
                user_id text NOT NULL,
                kind text NOT NULL,
                name text NOT NULL,
                sealed text NOT NULL,
                PRIMARY KEY (user_id, kind, name)
            )"""
        ]

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[Envelope[Event]]
    ) -> None:
        table = f'"{schema}".user_secrets'
        for env in events:
            e = env.event
            match e:
                case g.SecretSet():
                    await conn.execute(
                        f"INSERT INTO {table} VALUES ($1, $2, $3, $4)"
                        " ON CONFLICT (user_id, kind, name) DO UPDATE SET sealed = $4",
                        e.user_id, e.kind, e.name, e.sealed,
                    )  # fmt: skip
                case g.SecretCleared():
                    await conn.execute(
                        f"DELETE FROM {table} WHERE user_id = $1 AND kind = $2 AND name = $3",
                        e.user_id, e.kind, e.name,
                    )  # fmt: skip
                case g.UserDeleted():
                    await conn.execute(f"DELETE FROM {table} WHERE user_id = $1", e.user_id)
