"""REST and WebSocket for sessions: commands out through the command client, answers from the
sessions read model (schema ``sessions``, read-only), live views from the log and the deltas.

WebSocket ``/ws/sessions/{id}?after=SEQ``: the session's durable events with a stream sequence
above ``after`` (an ordered consumer: no gap, no duplicate, then live), interleaved with token
deltas from core NATS. A client that reconnects passes the last ``seq`` it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, WebSocket, delete, get, patch, post, put, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import Parameter
from litestar.response import Response
from litestar.status_codes import HTTP_201_CREATED
from litestar.types import ControllerRouterHandler
from nats.aio.msg import Msg
from orrery.events import Command, Event, subjects
from orrery.events import sessions as s
from orrery.gateway import auth
from orrery.gateway.api import (
    CommandIn,
    ContextApi,
    by_tag,
    error_frame,
    follow,
    run_command,
    to_command,
)
from orrery.gateway.errors import ApiError, check_value
from orrery.gateway.readmodel import caught_up
from orrery.gateway.users import agent_defaults
from orrery.gateway.worktrees import command_id
from orrery.runtime.clock import UUID7

_ids = UUID7()
_decode = msgspec.json.decode
_encoder = msgspec.json.Encoder()
WAIT_S = 30.0
MAX_INDEX = 2**31 - 1  # a message index is a PostgreSQL integer
MAX_SEQ = 2**63 - 1  # a stream sequence, as a socket's ``after`` (JetStream's are 64-bit)


class SessionOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    worktree_id: str
    board_id: str | None
    title: str
    settings: dict[str, Any]
    relation: str
    parent_id: str | None
    fork_point: int | None
    native_id: str | None  # the agent CLI's own session id, once it named one
    status: str
    active_task: str | None
    queue: list[str]
    message_count: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    deleted: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    last_seq: int


class TaskOut(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    session_id: str
    prompt: str
    status: str
    queue_position: int | None
    model: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    raw_usage: dict[str, Any] | None
    git_start: dict[str, Any] | None
    git_end: dict[str, Any] | None
    error: str | None
    result: str | None
    duration_ms: int | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class MessageOut(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    message_id: str
    task_id: str
    role: str
    blocks: list[dict[str, Any]]
    model: str | None
    created_at: datetime
    seq: int


class PermissionOut(msgspec.Struct, frozen=True, kw_only=True):
    request_id: str
    task_id: str
    tool: str
    input: dict[str, Any]
    deadline: datetime
    status: str
    scope: str | None
    decided_by: str | None
    reason: str | None


class Genealogy(msgspec.Struct, frozen=True, kw_only=True):
    session: SessionOut
    ancestors: list[SessionOut]
    children: list[dict[str, Any]]  # {session, relation, children: [...]}, recursively


class CreateSessionIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    worktree: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    title: Annotated[str, msgspec.Meta(max_length=200)] = ""
    agent: Literal["builtin", "claude-code", "codex", "gemini", "opencode"] = "builtin"
    model: Annotated[str, msgspec.Meta(max_length=200)] = ""
    permission_mode: Literal["ask", "auto", "allow-all"] | None = None  # None: yours, else ask
    thinking: Literal["auto", "off"] | None = None  # None: your default, else auto
    prompt: Annotated[str, msgspec.Meta(max_length=100_000)] | None = None


class UpdateSessionIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to change; a field left out stays. Settings apply from the session's next task."""

    title: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    model: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    permission_mode: Literal["ask", "auto", "allow-all"] | None = None
    thinking: Literal["auto", "off"] | None = None


class PromptIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    mode: Literal["queue", "steer"] = "queue"


class PromptOut(msgspec.Struct, frozen=True):
    task_id: str
    status: Literal["running", "queued", "steered"]


class ReorderIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    task_ids: list[str]


class ForkIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    prompt: Annotated[str, msgspec.Meta(max_length=100_000)] | None = None
    after_message: Annotated[int, msgspec.Meta(ge=0)] | None = None
    title: Annotated[str, msgspec.Meta(max_length=200)] = ""


class SpawnIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    title: Annotated[str, msgspec.Meta(max_length=200)] = ""
    agent: Literal["builtin", "claude-code", "codex", "gemini", "opencode"] | None = None
    model: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class DecisionIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    allow: bool
    scope: Literal["once", "session"] = "once"
    reason: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class ResumeIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    task_id: str


def _session(row: asyncpg.Record) -> SessionOut:
    return SessionOut(
        id=row["session_id"],
        worktree_id=row["worktree_id"],
        board_id=row["board_id"],
        title=row["title"],
        settings=_decode(row["settings"]),
        relation=row["relation"],
        parent_id=row["parent_id"],
        fork_point=row["fork_point"],
        native_id=row["native_id"],
        status=row["status"],
        active_task=row["active_task"],
        queue=_decode(row["queue"]),
        message_count=row["message_count"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cost_usd=row["cost_usd"],
        deleted=row["deleted"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_seq=row["last_seq"],
    )


def _task(row: asyncpg.Record) -> TaskOut:
    def js(value: str | None) -> Any:
        return _decode(value) if value else None

    return TaskOut(
        id=row["task_id"],
        session_id=row["session_id"],
        prompt=row["prompt"],
        status=row["status"],
        queue_position=row["queue_position"],
        model=row["model"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        cache_write_tokens=row["cache_write_tokens"],
        cost_usd=row["cost_usd"],
        raw_usage=js(row["raw_usage"]),
        git_start=js(row["git_start"]),
        git_end=js(row["git_end"]),
        error=row["error"],
        result=row["result"],
        duration_ms=row["duration_ms"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
    )


class SessionsReadModel:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        try:
            return list(await self._pool.fetch(sql, *args))
        except asyncpg.UndefinedTableError:
            return []

    async def caught_up(self, sequence: int, timeout: float = 10.0) -> None:
        await caught_up(self._pool, "sessions", "catalog", sequence, timeout)

    async def session(self, ref: str) -> SessionOut:
        rows = await self._fetch(
            "SELECT * FROM sessions.sessions WHERE session_id = $1"
            " OR (NOT deleted AND left(session_id, length($1)) = $1)",
            ref,
        )
        exact = [r for r in rows if r["session_id"] == ref]
        if exact:
            return _session(exact[0])
        if not rows:
            raise ApiError(404, "session.not_found", f"no session {ref!r}")
        if len(rows) > 1:
            raise ApiError(409, "session.ambiguous", f"{ref!r} matches {len(rows)} sessions")
        return _session(rows[0])

    async def sessions(self, worktree_id: str | None, include_deleted: bool) -> list[SessionOut]:
        rows = await self._fetch(
            "SELECT * FROM sessions.sessions WHERE ($1::text IS NULL OR worktree_id = $1)"
            " AND ($2 OR NOT deleted) ORDER BY created_at",
            worktree_id,
            include_deleted,
        )
        return [_session(r) for r in rows]

    async def tasks(self, session_id: str) -> list[TaskOut]:
        rows = await self._fetch(
            "SELECT * FROM sessions.tasks WHERE session_id = $1 ORDER BY created_at, last_seq",
            session_id,
        )
        return [_task(r) for r in rows]

    async def messages(self, session_id: str, after: int, limit: int) -> list[MessageOut]:
        rows = await self._fetch(
            "SELECT * FROM sessions.messages WHERE session_id = $1 AND index > $2"
            " ORDER BY index LIMIT $3",
            session_id,
            after,
            limit,
        )
        return [
            MessageOut(
                index=r["index"],
                message_id=r["message_id"],
                task_id=r["task_id"],
                role=r["role"],
                blocks=_decode(r["blocks"]),
                model=r["model"],
                created_at=r["created_at"],
                seq=r["seq"],
            )
            for r in rows
        ]

    async def permissions(self, session_id: str) -> list[PermissionOut]:
        rows = await self._fetch(
            "SELECT * FROM sessions.permissions WHERE session_id = $1 ORDER BY created_at",
            session_id,
        )
        return [
            PermissionOut(
                request_id=r["request_id"],
                task_id=r["task_id"],
                tool=r["tool"],
                input=_decode(r["input"]),
                deadline=r["deadline"],
                status=r["status"],
                scope=r["scope"],
                decided_by=r["decided_by"],
                reason=r["reason"],
            )
            for r in rows
        ]

    async def genealogy(self, session_id: str) -> Genealogy:
        me = await self.session(session_id)
        ancestors: list[SessionOut] = []
        parent = me.parent_id
        while parent is not None and len(ancestors) < 100:
            up = await self.session(parent)
            ancestors.append(up)
            parent = up.parent_id

        async def tree(of: str, depth: int) -> list[dict[str, Any]]:
            if depth > 20:
                return []
            rows = await self._fetch(
                "SELECT * FROM sessions.sessions WHERE parent_id = $1 AND NOT deleted"
                " ORDER BY created_at",
                of,
            )
            return [
                {
                    "session": msgspec.to_builtins(_session(r)),
                    "relation": r["relation"],
                    "children": await tree(r["session_id"], depth + 1),
                }
                for r in rows
            ]

        return Genealogy(session=me, ancestors=ancestors, children=await tree(me.id, 0))


class SessionsApi(ContextApi[SessionsReadModel]):
    """The sessions handlers' command client, read models and NATS."""


_NAMESPACE = uuid.UUID("7f0e1c52-3a8e-4c51-9d1c-0f6f3b7a2d10")


def derived_id(request: Request[Any, Any, Any], purpose: str) -> str:
    """An id the same ``Idempotency-Key`` always gives (a retried create names the same
    session, task or child), else a new one."""
    if request.headers.get("idempotency-key") is None:
        return _ids.new()
    return str(uuid.uuid5(_NAMESPACE, f"{command_id(request)}:{purpose}"))


def _is(*types: type[Event]) -> Any:
    return lambda env: isinstance(env.event, types)


class SessionsController(Controller):
    path = "/api/sessions"
    tags = ["sessions"]

    @post("/", summary="Create a session in a worktree (optionally with a first prompt)")
    async def create(
        self, request: Request[Any, Any, Any], data: CreateSessionIn, sessions: SessionsApi
    ) -> Response[SessionOut]:
        worktree = await sessions.worktrees.worktree(data.worktree)
        if worktree.status != "active":
            raise ApiError(
                409, "worktree.not_active", f"worktree {worktree.name} is {worktree.status}"
            )
        session_id = derived_id(request, "session")
        mine = await agent_defaults(sessions.model.pool, auth.actor(), data.agent)
        settings = s.AgentSettings(
            agent=data.agent,
            model=data.model or mine.model or "",
            permission_mode=data.permission_mode or mine.permission_mode or "ask",  # type: ignore[arg-type]
            thinking=data.thinking or mine.thinking or "auto",  # type: ignore[arg-type]
        )
        await sessions.send(
            s.CreateSession(
                command_id=command_id(request),
                session_id=session_id,
                worktree_id=worktree.id,
                title=data.title,
                settings=settings,
            )
        )
        if data.prompt:
            await sessions.send(
                s.SubmitPrompt(
                    command_id=derived_id(request, "prompt"),
                    session_id=session_id,
                    task_id=derived_id(request, "task"),
                    prompt=data.prompt,
                )
            )
        return Response(await sessions.model.session(session_id), status_code=HTTP_201_CREATED)

    @get("/", summary="List sessions")
    async def list_sessions(
        self,
        sessions: SessionsApi,
        worktree: str | None = None,
        include_deleted: Annotated[bool, Parameter(query="all")] = False,
    ) -> list[SessionOut]:
        worktree_id = (await sessions.worktrees.worktree(worktree)).id if worktree else None
        return await sessions.model.sessions(worktree_id, include_deleted)

    @get("/{ref:str}", summary="A session by id or id prefix")
    async def show(self, ref: str, sessions: SessionsApi) -> SessionOut:
        return await sessions.model.session(ref)

    @patch(
        "/{ref:str}",
        summary="Change a session's title, model, permission mode or thinking (from its next task)",
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        data: UpdateSessionIn,
        sessions: SessionsApi,
    ) -> SessionOut:
        session = await sessions.model.session(ref)
        await sessions.send(
            s.UpdateSession(
                command_id=command_id(request),
                session_id=session.id,
                title=data.title,
                model=data.model,
                permission_mode=data.permission_mode,
                thinking=data.thinking,
            )
        )
        return await sessions.model.session(session.id)

    @post("/{ref:str}/prompt", summary="Prompt: runs now, or queued, or steered into the task")
    async def prompt(
        self, request: Request[Any, Any, Any], ref: str, data: PromptIn, sessions: SessionsApi
    ) -> Response[PromptOut]:
        session = await sessions.model.session(ref)
        task_id = derived_id(request, "task")
        sent = await sessions.send(
            s.SubmitPrompt(
                command_id=command_id(request),
                session_id=session.id,
                task_id=task_id,
                prompt=data.prompt,
                mode=data.mode,
            )
        )
        after = await sessions.model.session(session.id)
        status: Literal["running", "queued", "steered"] = (
            "running"
            if after.active_task == task_id
            else "queued"
            if task_id in after.queue
            else "steered"
        )
        del sent
        return Response(PromptOut(task_id=task_id, status=status), status_code=HTTP_201_CREATED)

    @get("/{ref:str}/queue", summary="Queued prompts, in order")
    async def queue(self, ref: str, sessions: SessionsApi) -> list[TaskOut]:
        session = await sessions.model.session(ref)
        tasks = {t.id: t for t in await sessions.model.tasks(session.id)}
        return [tasks[t] for t in session.queue if t in tasks]

    @put("/{ref:str}/queue", summary="Reorder the queue", status_code=200)
    async def reorder(
        self, request: Request[Any, Any, Any], ref: str, data: ReorderIn, sessions: SessionsApi
    ) -> SessionOut:
        session = await sessions.model.session(ref)
        await sessions.send(
            s.ReorderQueue(
                command_id=command_id(request), session_id=session.id, task_ids=data.task_ids
            )
        )
        return await sessions.model.session(session.id)

    @delete("/{ref:str}/queue/{task_id:str}", summary="Remove a queued prompt", status_code=200)
    async def unqueue(
        self, request: Request[Any, Any, Any], ref: str, task_id: str, sessions: SessionsApi
    ) -> SessionOut:
        session = await sessions.model.session(ref)
        await sessions.send(
            s.RemoveQueuedPrompt(
                command_id=command_id(request), session_id=session.id, task_id=task_id
            )
        )
        return await sessions.model.session(session.id)

    @post("/{ref:str}/stop", summary="Stop the running task (stopped within 10 s)", status_code=200)
    async def stop(
        self, request: Request[Any, Any, Any], ref: str, sessions: SessionsApi
    ) -> SessionOut:
        session = await sessions.model.session(ref)
        await sessions.send(
            s.StopTask(command_id=command_id(request), session_id=session.id),
            until=_is(s.TaskStopped, s.TaskCompleted, s.TaskFailed, s.TaskInterrupted),
            timeout=15,
        )
        return await sessions.model.session(session.id)

    @post("/{ref:str}/resume", summary="Run an interrupted task again", status_code=200)
    async def resume(
        self, request: Request[Any, Any, Any], ref: str, data: ResumeIn, sessions: SessionsApi
    ) -> SessionOut:
        session = await sessions.model.session(ref)
        await sessions.send(
            s.ResumeTask(
                command_id=command_id(request), session_id=session.id, task_id=data.task_id
            )
        )
        return await sessions.model.session(session.id)

    @post("/{ref:str}/fork", summary="Fork: a sibling sharing the conversation so far")
    async def fork(
        self, request: Request[Any, Any, Any], ref: str, data: ForkIn, sessions: SessionsApi
    ) -> Response[SessionOut]:
        session = await sessions.model.session(ref)
        child = derived_id(request, "child")
        await sessions.send(
            s.ForkSession(
                command_id=command_id(request),
                session_id=session.id,
                child_id=child,
                prompt=data.prompt,
                after_message=data.after_message,
                title=data.title,
            ),
            until=lambda env: (
                isinstance(env.event, s.SessionCreated) and env.event.session_id == child
            ),
        )
        return Response(await sessions.model.session(child), status_code=HTTP_201_CREATED)

    @post("/{ref:str}/spawn", summary="Spawn: a fresh child that reports back when done")
    async def spawn(
        self, request: Request[Any, Any, Any], ref: str, data: SpawnIn, sessions: SessionsApi
    ) -> Response[SessionOut]:
        session = await sessions.model.session(ref)
        child = derived_id(request, "child")
        settings = None
        if data.agent or data.model:
            base = s.AgentSettings(**session.settings)
            settings = msgspec.structs.replace(
                base,
                agent=data.agent or base.agent,
                model=data.model if data.model is not None else base.model,
            )
        await sessions.send(
            s.SpawnSession(
                command_id=command_id(request),
                session_id=session.id,
                child_id=child,
                prompt=data.prompt,
                title=data.title,
                settings=settings,
            ),
            until=lambda env: (
                isinstance(env.event, s.SessionCreated) and env.event.session_id == child
            ),
        )
        return Response(await sessions.model.session(child), status_code=HTTP_201_CREATED)

    @post(
        "/{ref:str}/permissions/{request_id:str}",
        summary="Approve or deny a permission request",
        status_code=200,
    )
    async def decide(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        request_id: str,
        data: DecisionIn,
        sessions: SessionsApi,
    ) -> list[PermissionOut]:
        session = await sessions.model.session(ref)
        await sessions.send(
            s.DecidePermission(
                command_id=command_id(request),
                session_id=session.id,
                request_id=request_id,
                allow=data.allow,
                scope=data.scope,
                reason=data.reason,
            )
        )
        return await sessions.model.permissions(session.id)

    @get("/{ref:str}/permissions", summary="Permission requests of the session")
    async def permissions(self, ref: str, sessions: SessionsApi) -> list[PermissionOut]:
        return await sessions.model.permissions((await sessions.model.session(ref)).id)

    @get("/{ref:str}/tasks", summary="Tasks with usage, cost and git state")
    async def tasks(self, ref: str, sessions: SessionsApi) -> list[TaskOut]:
        return await sessions.model.tasks((await sessions.model.session(ref)).id)

    @get("/{ref:str}/messages", summary="Messages after an index")
    async def messages(
        self,
        ref: str,
        sessions: SessionsApi,
        after: Annotated[int, Parameter(ge=-1, le=MAX_INDEX)] = -1,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 500,
    ) -> list[MessageOut]:
        return await sessions.model.messages((await sessions.model.session(ref)).id, after, limit)

    @get("/{ref:str}/genealogy", summary="Ancestors and the tree of forks and spawns")
    async def genealogy(self, ref: str, sessions: SessionsApi) -> Genealogy:
        return await sessions.model.genealogy((await sessions.model.session(ref)).id)

    @delete(
        "/{ref:str}", summary="Delete a session; say what happens to its children", status_code=200
    )
    async def remove(
        self,
        request: Request[Any, Any, Any],
        ref: str,
        sessions: SessionsApi,
        children: Literal["refuse", "delete", "orphan"] = "refuse",
    ) -> SessionOut:
        session = await sessions.model.session(ref)
        await sessions.send(
            s.DeleteSession(
                command_id=command_id(request), session_id=session.id, children=children
            )
        )
        return await sessions.model.session(session.id)


class LedgerRow(msgspec.Struct, frozen=True, kw_only=True):
    key: str | None
    tasks: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


_LEDGER_KEYS = {
    "task": "t.task_id",
    "session": "t.session_id",
    "user": "t.created_by",
    "board": "s.board_id",
    "model": "t.model",
}


class LedgerController(Controller):
    path = "/api/ledger"
    tags = ["sessions"]

    @get("/", summary="Tokens and cost by task, session, user, board or model")
    async def ledger(
        self,
        sessions: SessionsApi,
        by: Literal["task", "session", "user", "board", "model"] = "session",
        since: datetime | None = None,
    ) -> list[LedgerRow]:
        key = _LEDGER_KEYS[by]  # from a fixed table, never from the request text
        if since is not None:
            try:  # what asyncpg does to it: a time zone can push it out of datetime's range
                since.astimezone(UTC)
            except OverflowError:
                raise ApiError(400, "request.invalid", "since is out of range") from None
        rows = await sessions.model._fetch(
            f"SELECT {key} AS key, count(*) AS tasks,"
            " coalesce(sum(t.input_tokens), 0) AS input_tokens,"
            " coalesce(sum(t.output_tokens), 0) AS output_tokens,"
            " coalesce(sum(t.cache_read_tokens), 0) AS cache_read_tokens,"
            " coalesce(sum(t.cache_write_tokens), 0) AS cache_write_tokens,"
            " coalesce(sum(t.cost_usd), 0) AS cost_usd"
            " FROM sessions.tasks t JOIN sessions.sessions s USING (session_id)"
            " WHERE t.status IN ('completed', 'failed', 'stopped', 'interrupted')"
            " AND ($1::timestamptz IS NULL OR t.ended_at >= $1)"
            f" GROUP BY {key} ORDER BY cost_usd DESC, key",
            since,
        )
        return [
            LedgerRow(
                key=r["key"],
                tasks=r["tasks"],
                input_tokens=r["input_tokens"],
                output_tokens=r["output_tokens"],
                cache_read_tokens=r["cache_read_tokens"],
                cache_write_tokens=r["cache_write_tokens"],
                cost_usd=r["cost_usd"],
            )
            for r in rows
        ]


@websocket("/ws/sessions/{session_id:str}")
async def session_stream(  # noqa: PLR0915 - the socket's whole life
    socket: WebSocket[Any, Any, Any], session_id: str, sessions: SessionsApi
) -> None:
    """Durable events after ``?after=SEQ`` then live, interleaved with token deltas."""
    await socket.accept()
    try:
        after = int(socket.query_params.get("after", "0"))
        if not 0 <= after <= MAX_SEQ:
            raise ValueError(after)
    except ValueError:
        await socket.send_json(
            {"type": "error", "code": "request.invalid", "message": "after is a stream sequence"}
        )
        await socket.close(code=1008)
        return
    try:
        check_value("the path", session_id)
        session = await sessions.model.session(session_id)
    except ApiError as exc:
        await socket.send_json({"type": "error", "code": exc.code, "message": exc.message})
        await socket.close(code=1008)
        return
    out: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)

    async def on_delta(msg: Msg) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            out.put_nowait(b'{"type":"delta","delta":' + msg.data + b"}")

    live = await sessions.nc.subscribe(f"sessions.live.{subjects.token(session.id)}", cb=on_delta)
    durable = await follow(
        sessions.js, sessions.registry, "sessions", "session", session.id, after, out.put
    )

    async def pump() -> None:
        while True:
            frame = await out.get()
            await socket.send_data(frame.decode(), mode="text")

    principal = auth.current.get() or auth.Principal("system", "viewer", "anonymous")
    replies: set[asyncio.Task[None]] = set()

    async def answer(frame: CommandIn) -> None:
        make = functools.partial(to_session_command, session_id=session.id)
        out.put_nowait(await run_command(sessions.client, principal, frame, make))

    async def listen() -> None:
        while True:
            raw = await socket.receive_data(mode="text")
            try:
                frame = _session_frames.decode(raw)
            except (msgspec.DecodeError, RecursionError) as exc:
                out.put_nowait(error_frame("frame.invalid", str(exc)))
                continue
            task = asyncio.create_task(answer(frame))
            replies.add(task)
            task.add_done_callback(replies.discard)

    tasks = [asyncio.create_task(pump()), asyncio.create_task(listen())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for task in (*tasks, *replies):
            task.cancel()
        await asyncio.gather(*tasks, *replies, return_exceptions=True)
        with contextlib.suppress(Exception):
            await live.unsubscribe()
        with contextlib.suppress(Exception):
            await durable.unsubscribe()


ROUTES: list[ControllerRouterHandler] = [SessionsController, LedgerController, session_stream]

# What a session's socket may send, on that session: prompt, stop, answer a permission request,
# change or resume the queue. (Fork, spawn, create and delete make or remove sessions: REST.)
SESSION_COMMANDS = by_tag(
    s.SubmitPrompt,
    s.StopTask,
    s.DecidePermission,
    s.RemoveQueuedPrompt,
    s.ReorderQueue,
    s.ResumeTask,
)
_session_frames = msgspec.json.Decoder(CommandIn)


def to_session_command(frame: CommandIn, session_id: str) -> Command:
    """A ``command`` frame as a command on the socket's session; a prompt without a
    ``task_id`` gets one derived from the frame's id (the same id twice: one task)."""
    fill = {"session_id": session_id}
    if frame.command.get("type") == "sessions.SubmitPrompt" and "task_id" not in frame.command:
        fill["task_id"] = str(uuid.uuid5(_NAMESPACE, f"{frame.id}:task"))
    return to_command(frame, SESSION_COMMANDS, fill)
