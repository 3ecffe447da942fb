"""The runner: runs the tasks the session log starts, and records what they do.

It reads ``sessions.evt.>`` through a durable consumer (one claimant at a time, a PostgreSQL
advisory lock). ``TaskStarted`` launches the session's provider in its own asyncio task;
deltas go out on core NATS (``sessions.live.<session_id>``, ephemeral), complete messages and
permission requests are appended as events, and the outcome ends the task through ``Finish``
(which starts the next queued task in the same decision). ``StopRequested`` cancels the run and
records ``TaskStopped`` by the deadline whatever the provider does. After a restart, tasks the
log says are running are recorded ``TaskInterrupted``: resumable, never stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import asyncpg
import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from orrery.events import Envelope, Event, EventMeta, Registry, subjects
from orrery.events import worktrees as wt
from orrery.events.errors import EventsError, Rejection
from orrery.events.sessions import (
    AgentSessionBound,
    Block,
    ChildReported,
    ChildSessionRequested,
    DeleteSession,
    GitSnapshot,
    MessageRecorded,
    PermissionDecided,
    PermissionRequested,
    PromptSteered,
    SessionCreated,
    SessionDeleted,
    SessionDelta,
    StopRequested,
    SubmitPrompt,
    TaskCompleted,
    TaskFailed,
    TaskGitState,
    TaskInterrupted,
    TaskStarted,
    TaskStopped,
)
from orrery.runtime import topology
from orrery.runtime.clock import UUID7
from orrery.runtime.commands.client import CommandClient
from orrery.runtime.commands.handling import CommandBus
from orrery.runtime.errors import RuntimeFailure
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE, decode_msg
from orrery.runtime.reactions import claimed, follow_up
from orrery.runtime.secrets import SESSION_TOKEN_TTL_S, Keys, SecretError
from orrery.sessions import pricing
from orrery.sessions.agents.base import (
    AgentIO,
    McpAccess,
    Provider,
    ProviderError,
    Providers,
    Turn,
    built,
)
from orrery.sessions.domain.session import (
    PERMISSION_WINDOW,
    SESSION,
    CreateChild,
    Expire,
    Finish,
    Record,
    Session,
)

log = logging.getLogger(__name__)

PRELOAD_DELAY_S = 2.0  # after the runner starts: off the start-up path
LOCK_KEY = "orrery.sessions.runner"
_RETRYABLE: tuple[type[BaseException], ...] = (RuntimeFailure, *NATS_UNAVAILABLE)
GIT_TIMEOUT_S = 10.0
WORKTREE_WAIT_S = 10.0
IDLE_TIMEOUT_S = 900.0  # ORRERY_AGENT_IDLE_TIMEOUT
REAP_EVERY_S = 30.0
_ENCODER = msgspec.json.Encoder()


def live_subject(session_id: str) -> str:
    """Core NATS subject of a session's token deltas (ephemeral; not in any stream)."""
    return f"sessions.live.{subjects.token(session_id)}"


@dataclass
class _Run:
    session_id: str
    task_id: str
    meta: EventMeta
    key: str = ""  # one run of the task (its TaskStarted's id): a resumed task runs again
    task: asyncio.Task[None] | None = None
    steered: list[str] = field(default_factory=list)
    waiting: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    asked: dict[str, str] = field(default_factory=dict)  # request id -> tool
    allowed_tools: set[str] = field(default_factory=set)
    stopping: bool = False
    finished: bool = False


class WorktreePaths:
    """Where a worktree lives, from the sessions service's copy of the worktrees log."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def path(self, worktree_id: str) -> Path | None:
        try:
            row = await self._pool.fetchrow(
                "SELECT path FROM sessions.worktree_paths WHERE worktree_id = $1"
                " AND status = 'active'",
                worktree_id,
            )
        except asyncpg.UndefinedTableError:
            return None
        return Path(row["path"]) if row and row["path"] else None


@dataclass
class SessionRunner:
    nc: Client
    js: JetStreamContext
    pool: asyncpg.Pool
    bus: CommandBus
    registry: Registry
    providers: Mapping[str, Provider]
    paths: WorktreePaths
    env: Mapping[str, str]  # model endpoints and keys for the agents' processes
    prices: Mapping[str, pricing.Price]
    keys: Keys | None = None  # opens users' sealed keys, mints sessions' MCP tokens
    mcp_url: str | None = None  # Orrery's MCP server, attached to every agent that takes one
    preload: tuple[str, ...] = ()  # agents whose provider loads soon after start, not on first use
    permission_window: timedelta = PERMISSION_WINDOW
    idle_timeout: float = IDLE_TIMEOUT_S  # an agent CLI process unused this long is ended
    state: str = "starting"
    _runs: dict[str, _Run] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _expiries: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _ids: UUID7 = field(default_factory=UUID7)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        async with claimed(self.pool, LOCK_KEY, stop, self._standby) as held:
            if not held:
                return
            self.git = CommandClient(self.nc, self.js, self.registry)
            if isinstance(self.providers, Providers):
                for agent in self.preload:  # in the background: the service is up already
                    self._spawn(self.providers.warm(agent, delay=PRELOAD_DELAY_S))
            try:
                await self._loop(stop)
            finally:
                await self._shutdown()
                await self.git.close()
                for provider in built(self.providers).values():
                    with contextlib.suppress(Exception):
                        await provider.close()

    def _standby(self) -> None:
        self.state = "standby"

    async def _loop(self, stop: asyncio.Event) -> None:
        sub = await self.js.pull_subscribe_bind(
            durable=topology.reactor_consumer_name("sessions"),
            stream=subjects.event_stream("sessions"),
        )
        self.state = "recovering"
        await self._recover()
        self.state = "running"
        reaped = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - reaped > REAP_EVERY_S:
                reaped = time.monotonic()
                await self._reap()
            try:
                msgs = await sub.fetch(64, timeout=1.0)
            except TimeoutError:
                continue
            except NATS_UNAVAILABLE as exc:
                log.warning("runner fetch failed, retrying: %r", exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                await self._handle(msg)

    async def _reap(self) -> None:
        for name, provider in built(self.providers).items():
            try:
                await provider.reap(self.idle_timeout)
            except Exception:
                log.exception("ending the idle processes of %s failed", name)

    async def _shutdown(self) -> None:
        """Stopping the service: runs in flight end as interrupted (resumable); deadlines still
        waiting are dropped (the next instance's recovery denies what is left pending)."""
        for expiry in list(self._expiries.values()):
            expiry.cancel()
        for run in list(self._runs.values()):
            if run.task is not None and not run.task.done():
                run.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(run.task, 5)
            if not run.finished:
                with contextlib.suppress(Exception):
                    await self._finish(
                        run,
                        TaskInterrupted(
                            session_id=run.session_id,
                            task_id=run.task_id,
                            reason="the sessions service stopped during the run",
                        ),
                    )
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    async def _recover(self) -> None:
        """Tasks the log says are running but no process runs: interrupted, resumable.

        Only a task an earlier instance was given to run: one started while this instance
        recovers (its ``TaskStarted`` not yet delivered to any runner) is this instance's to
        launch once its loop starts, not an orphan."""
        info = await self.js.consumer_info(
            subjects.event_stream("sessions"), topology.reactor_consumer_name("sessions")
        )
        delivered = info.delivered.stream_seq if info.delivered else 0
        rows = await self._running_sessions()
        for session_id in rows:
            state = await self.bus.current(SESSION, session_id)
            if state.active is None or session_id in self._runs:
                continue
            if await self._started_at(session_id, state.active) > delivered:
                continue
            outcome = TaskInterrupted(
                session_id=session_id,
                task_id=state.active,
                reason="the sessions service restarted during the run",
            )
            await self.bus.run(
                Finish(
                    command_id=f"{state.active}:interrupted:{self._ids.new()}",
                    session_id=session_id,
                    task_id=state.active,
                    outcome=outcome,
                ),
                EventMeta(occurred_at=datetime.now(UTC), actor="system"),
            )

    async def _started_at(self, session_id: str, task_id: str) -> int:
        """Stream sequence of the task's latest ``TaskStarted`` (0 if none)."""
        envelopes = await self.bus.store.load(
            subjects.event_subject("sessions", "session", session_id)
        )
        starts = [
            e.sequence
            for e in envelopes
            if isinstance(e.event, TaskStarted) and e.event.task_id == task_id
        ]
        return starts[-1] if starts else 0

    async def _running_sessions(self) -> list[str]:
        """Sessions with an active task, once the read model has caught up with the log."""
        last = await self._last_session_seq()
        async with asyncio.timeout(60):
            while True:
                try:
                    seq = await self.pool.fetchval(
                        "SELECT last_seq FROM sessions.orrery_projections WHERE name = 'catalog'"
                    )
                    if (seq or 0) >= last:
                        rows = await self.pool.fetch(
                            "SELECT session_id FROM sessions.sessions"
                            " WHERE active_task IS NOT NULL AND NOT deleted"
                        )
                        return [r["session_id"] for r in rows]
                except asyncpg.UndefinedTableError:
                    if last == 0:
                        return []
                await asyncio.sleep(0.1)

    async def _last_session_seq(self) -> int:
        """Stream sequence of the newest session event (rejections live on other subjects and
        never reach the read model's checkpoint)."""
        sub = await self.js.subscribe(
            subjects.event_subjects("sessions", "session"),
            stream=subjects.event_stream("sessions"),
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST,
        )
        try:
            msg = await sub.next_msg(timeout=1.0)
        except TimeoutError:
            return 0
        finally:
            await sub.unsubscribe()
        return int(msg.metadata.sequence.stream)

    async def _handle(self, msg: Msg) -> None:
        try:
            envelope = decode_msg(self.registry, msg)
        except EventsError as exc:
            log.error("runner cannot decode %s: %r", msg.subject, exc)
            await msg.ack()
            return
        try:
            await self._react(envelope)
        except _RETRYABLE as exc:
            log.warning("reaction to %s failed, will retry: %r", envelope.type, exc)
            with contextlib.suppress(*NATS_UNAVAILABLE):
                await msg.nak(delay=1.0)
            return
        with contextlib.suppress(*NATS_UNAVAILABLE):
            await msg.ack()

    async def _react(self, envelope: Envelope[Event]) -> None:  # noqa: PLR0912 - a table
        event = envelope.event
        match event:
            case SessionCreated(settings=settings) if isinstance(self.providers, Providers):
                self._spawn(self.providers.warm(settings.agent))
            case TaskStarted():
                self._launch(envelope, event)
            case StopRequested():
                self._spawn(self._stop(envelope, event))
            case PermissionRequested(request_id=request_id):
                if request_id not in self._expiries:
                    task = asyncio.create_task(self._expire_later(envelope, event))
                    self._expiries[request_id] = task
                    task.add_done_callback(functools.partial(self._forget_expiry, request_id))
            case PermissionDecided(request_id=request_id, allow=allow, scope=scope):
                pending = self._expiries.pop(request_id, None)
                if pending is not None:
                    pending.cancel()  # decided: no deadline left to keep
                run = self._runs.get(event.session_id)
                if run is not None:
                    future = run.waiting.pop(request_id, None)
                    if future is not None and not future.done():
                        future.set_result(allow)
                    if allow and scope == "session" and request_id in run.asked:
                        run.allowed_tools.add(run.asked[request_id])
            case PromptSteered(prompt=prompt):
                run = self._runs.get(event.session_id)
                if run is not None:
                    run.steered.append(prompt)
            case ChildSessionRequested():
                await self._create_child(envelope, event)
            case TaskCompleted() | TaskFailed() | TaskStopped():
                await self._report_to_parent(envelope, event)
            case SessionDeleted(children="delete", child_ids=children):
                for child in children:
                    with contextlib.suppress(Rejection):
                        await self.bus.run(
                            DeleteSession(
                                command_id=f"{envelope.event_id}:{child}",
                                session_id=child,
                                children="delete",
                            ),
                            follow_up(envelope),
                        )

    def _forget_expiry(self, request_id: str, _task: asyncio.Task[None]) -> None:
        self._expiries.pop(request_id, None)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- children ------------------------------------------------------------------------------

    async def _create_child(self, envelope: Envelope[Event], event: ChildSessionRequested) -> None:
        parent = await self.bus.current(SESSION, event.session_id)
        meta = follow_up(envelope)
        await self.bus.run(
            CreateChild(
                command_id=f"{envelope.event_id}:child",
                session_id=event.child_id,
                worktree_id=parent.worktree_id,
                parent_id=event.session_id,
                relation=event.relation,  # type: ignore[arg-type]
                title=event.title,
                settings=event.settings,
                fork_point=event.fork_point,
            ),
            meta,
        )
        if event.prompt:
            with contextlib.suppress(Rejection):
                await self.bus.run(
                    SubmitPrompt(
                        command_id=f"{envelope.event_id}:prompt",
                        session_id=event.child_id,
                        task_id=f"{event.child_id}-first",
                        prompt=event.prompt,
                    ),
                    meta,
                )

    async def _report_to_parent(
        self, envelope: Envelope[Event], event: TaskCompleted | TaskFailed | TaskStopped
    ) -> None:
        child = await self.bus.current(SESSION, event.session_id)
        if child.relation != "spawn" or child.parent_id is None:
            return
        outcome: Literal["completed", "failed", "stopped"] = (
            "completed"
            if isinstance(event, TaskCompleted)
            else "failed"
            if isinstance(event, TaskFailed)
            else "stopped"
        )
        result = event.result if isinstance(event, TaskCompleted) else ""
        if isinstance(event, TaskFailed):
            result = event.message
        await self.bus.run(
            Record(
                command_id=f"{envelope.event_id}:report",
                session_id=child.parent_id,
                events=[
                    ChildReported(
                        session_id=child.parent_id,
                        child_id=event.session_id,
                        task_id=event.task_id,
                        outcome=outcome,
                        result=result,
                    )
                ],
            ),
            follow_up(envelope),
        )

    # -- a run ---------------------------------------------------------------------------------

    def _launch(self, envelope: Envelope[Event], event: TaskStarted) -> None:
        previous = self._runs.get(event.session_id)
        if previous is not None and previous.task_id == event.task_id:
            return  # redelivered while running
        run = _Run(event.session_id, event.task_id, follow_up(envelope), key=envelope.event_id)
        self._runs[event.session_id] = run
        run.task = asyncio.create_task(self._execute(run, event), name=f"task:{event.task_id}")

    async def _execute(self, run: _Run, event: TaskStarted) -> None:
        started = time.monotonic()
        state = await self.bus.current(SESSION, run.session_id)
        if state.active != run.task_id:
            self._forget(run)
            return  # it ended before we got here (stopped, or handled before a restart)
        provider = self.providers.get(state.settings.agent)
        cwd = await self._worktree_path(state.worktree_id)
        if provider is None or cwd is None:
            why = (
                f"no provider for agent {state.settings.agent!r}"
                if provider is None
                else f"worktree {state.worktree_id} is not available"
            )
            code = "agent.unknown" if provider is None else "worktree.unavailable"
            await self._finish(
                run,
                TaskFailed(session_id=run.session_id, task_id=run.task_id, code=code, message=why),
            )
            return
        await self._git(run, state, "start")
        history = await self._history(state)
        turn = Turn(
            session_id=run.session_id,
            task_id=run.task_id,
            run_id=run.key,
            prompt=event.prompt,
            history=history,
            cwd=cwd,
            settings=state.settings,
            env=await self._agent_env(run.session_id),
            native_id=state.native_id,
            fork_of=await self._native_fork(state),
            mcp=await self._mcp_access(run.session_id, state.worktree_id),
        )
        io = _RunIO(self, run, state.settings.agent)
        outcome: TaskCompleted | TaskFailed | TaskStopped
        try:
            result = await provider.run(turn, io)
        except asyncio.CancelledError:
            if not run.stopping:
                raise  # the service is stopping: _shutdown records it interrupted
            outcome = TaskStopped(session_id=run.session_id, task_id=run.task_id)
        except ProviderError as exc:
            outcome = TaskFailed(
                session_id=run.session_id, task_id=run.task_id, code=exc.code, message=exc.message
            )
        except Exception as exc:
            log.exception("task %s failed", run.task_id)
            outcome = TaskFailed(
                session_id=run.session_id,
                task_id=run.task_id,
                code="agent.crashed",
                message=f"{type(exc).__name__}: {exc}",
            )
        else:
            if run.stopping:  # it finished as the stop arrived: the stop is what was asked
                outcome = TaskStopped(session_id=run.session_id, task_id=run.task_id)
                await self._finish(run, outcome)
                return
            outcome = TaskCompleted(
                session_id=run.session_id,
                task_id=run.task_id,
                model=result.model,
                usage=result.usage,
                cost_usd=pricing.cost(self.prices, result.model, result.usage),
                raw_usage=result.raw_usage,
                duration_ms=int((time.monotonic() - started) * 1000),
                result=result.final_text,
            )
        if not run.stopping:
            await self._git(run, state, "end")
        await self._finish(run, outcome)

    async def _native_fork(self, state: Session) -> str:
        """A fork's parent's native session, when the agent can fork it as is: same agent, and
        the fork point is where the parent's conversation still ends."""
        if state.relation != "fork" or state.native_id or state.parent_id is None:
            return ""
        parent = await self.bus.current(SESSION, state.parent_id)
        same = parent.settings.agent == state.settings.agent
        at_end = parent.messages == state.fork_point
        return parent.native_id if same and at_end else ""

    async def _creator(self, session_id: str) -> str | None:
        try:
            return await self.pool.fetchval(  # type: ignore[no-any-return]
                "SELECT created_by FROM sessions.sessions WHERE session_id = $1", session_id
            )
        except asyncpg.UndefinedTableError:
            return None

    async def _agent_env(self, session_id: str) -> Mapping[str, str]:
        """The deployment's agent environment, then the session creator's own API keys and
        variables over it (opened here, for this process only; a value that does not open is
        skipped with its name logged, never its value)."""
        user = await self._creator(session_id)
        if self.keys is None or not user:
            return self.env
        try:
            rows = await self.pool.fetch(
                "SELECT kind, name, sealed FROM sessions.user_secrets WHERE user_id = $1"
                " ORDER BY kind DESC",  # env first, then api_key: a key wins over a variable
                user,
            )
        except asyncpg.UndefinedTableError:
            return self.env
        env = dict(self.env)
        for row in rows:
            try:
                env[row["name"]] = self.keys.open(user, row["kind"], row["name"], row["sealed"])
            except SecretError:
                log.warning(
                    "%s %s of user %s does not open: skipped", row["kind"], row["name"], user
                )
        return env

    async def _mcp_access(self, session_id: str, worktree_id: str) -> McpAccess | None:
        """The session's MCP token, kept while it has more than half its life left (so a
        long-lived agent process keeps its configuration)."""
        if self.keys is None or not self.mcp_url:
            return None
        kept = self._tokens.get(session_id)
        if kept is not None and time.monotonic() - kept[1] < SESSION_TOKEN_TTL_S / 2:
            return McpAccess(self.mcp_url, kept[0])
        user = await self._creator(session_id) or "system"
        token = self.keys.session_token(user, session_id, worktree_id)
        self._tokens[session_id] = (token, time.monotonic())
        return McpAccess(self.mcp_url, token)

    async def _worktree_path(self, worktree_id: str) -> Path | None:
        """The worktree's path; a worktree created a moment ago may not have reached this
        service's copy of the worktrees log yet, so wait a little before giving up."""
        deadline = time.monotonic() + WORKTREE_WAIT_S
        while (path := await self.paths.path(worktree_id)) is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.1)
        return path

    async def _finish(
        self, run: _Run, outcome: TaskCompleted | TaskFailed | TaskStopped | TaskInterrupted
    ) -> None:
        if run.finished:
            return
        run.finished = True
        self._forget(run)
        await self.bus.run(
            Finish(
                command_id=f"{run.key or run.task_id}:finish:{type(outcome).__name__}",
                session_id=run.session_id,
                task_id=run.task_id,
                outcome=outcome,
            ),
            run.meta,
        )

    def _forget(self, run: _Run) -> None:
        if self._runs.get(run.session_id) is run:
            del self._runs[run.session_id]
        for future in run.waiting.values():
            if not future.done():
                future.set_result(False)

    async def _stop(self, envelope: Envelope[Event], event: StopRequested) -> None:
        run = self._runs.get(event.session_id)
        if run is None or run.task_id != event.task_id:
            # Nothing runs here (a restart, or it just ended): end it in the log if still open.
            state = await self.bus.current(SESSION, event.session_id)
            if state.active == event.task_id:
                orphan = _Run(
                    event.session_id, event.task_id, follow_up(envelope), key=envelope.event_id
                )
                await self._finish(
                    orphan,
                    TaskStopped(
                        session_id=event.session_id, task_id=event.task_id, how="abandoned"
                    ),
                )
            return
        run.stopping = True
        run.meta = follow_up(envelope)  # the outcome answers the stop (its correlation id)
        assert run.task is not None
        run.task.cancel()
        budget = max(0.5, (event.deadline - datetime.now(UTC)).total_seconds())
        loop = asyncio.get_running_loop()
        until = loop.time() + budget
        # Cancel again until it lets go: Python 3.11's wait_for (deep in the NATS client) can
        # swallow a cancellation that races with a result.
        while not run.task.done() and loop.time() < until:
            run.task.cancel()
            await asyncio.wait({run.task}, timeout=0.25)
        done = run.task.done()
        if not run.finished:
            # Cancelled before the provider ran (nothing recorded it), or the provider did not
            # let go in time: either way the log says stopped, by the bound.
            await self._finish(
                run,
                TaskStopped(
                    session_id=run.session_id,
                    task_id=run.task_id,
                    how="interrupt" if done else "abandoned",
                ),
            )

    async def _expire_later(self, envelope: Envelope[Event], event: PermissionRequested) -> None:
        delay = (event.deadline - datetime.now(UTC)).total_seconds()
        await asyncio.sleep(max(0.0, delay))
        await self.bus.run(
            Expire(
                command_id=f"{event.request_id}:expire",
                session_id=event.session_id,
                request_id=event.request_id,
            ),
            follow_up(envelope),
        )

    # -- helpers -------------------------------------------------------------------------------

    async def _git(self, run: _Run, state: Session, moment: Literal["start", "end"]) -> None:
        """The worktree's branch, sha and dirty flag, asked of the worktrees service."""
        try:
            sent = await self.git.send(
                wt.CaptureGitState(
                    command_id=f"{run.key}:git:{moment}",
                    worktree_id=state.worktree_id,
                    purpose=f"task-{moment}",
                ),
                actor="system",
                until=lambda e: isinstance(e.event, wt.GitStateCaptured),
                timeout=GIT_TIMEOUT_S,
            )
            captured = sent.events[-1].event if sent.events else None
            assert captured is None or isinstance(captured, wt.GitStateCaptured)
            git = (
                GitSnapshot(branch=None, sha=None, dirty=False, error="no answer")
                if captured is None
                else GitSnapshot(
                    branch=captured.branch,
                    sha=captured.sha,
                    dirty=captured.dirty,
                    error=captured.error,
                )
            )
        except RuntimeFailure as exc:
            git = GitSnapshot(branch=None, sha=None, dirty=False, error=str(exc))
        await self.record(
            run,
            TaskGitState(session_id=run.session_id, task_id=run.task_id, moment=moment, git=git),
            key=f"git-{moment}",
        )

    async def _history(self, state: Session) -> list[MessageRecorded]:
        """The conversation: a fork's inherited prefix (recursively), then its own messages."""
        own = [
            e.event
            for e in await self.bus.store.load(
                subjects.event_subject("sessions", "session", state.session_id)
            )
            if isinstance(e.event, MessageRecorded)
        ]
        if state.relation != "fork" or state.parent_id is None:
            return own
        parent = await self.bus.current(SESSION, state.parent_id)
        inherited = [m for m in await self._history(parent) if m.index < state.fork_point]
        return inherited + own

    async def record(self, run: _Run, event: Event, *, key: str) -> None:
        await self.bus.run(
            Record(
                command_id=f"{run.key}:{key}",
                session_id=run.session_id,
                events=[event],  # type: ignore[list-item]
            ),
            run.meta,
        )

    async def publish_delta(self, delta: SessionDelta) -> None:
        with contextlib.suppress(*NATS_UNAVAILABLE):
            await self.nc.publish(live_subject(delta.session_id), _ENCODER.encode(delta))


class _RunIO(AgentIO):
    def __init__(self, runner: SessionRunner, run: _Run, agent: str) -> None:
        self._runner = runner
        self._run = run
        self._agent = agent
        self._delta_index: dict[str, int] = {}

    async def delta(
        self, message_id: str, kind: Literal["text", "thinking", "tool_input"], text: str
    ) -> None:
        if self._run.stopping:
            raise asyncio.CancelledError  # a stop whose cancellation got lost on the way
        index = self._delta_index.get(message_id, 0)
        self._delta_index[message_id] = index + 1
        await self._runner.publish_delta(
            SessionDelta(
                session_id=self._run.session_id,
                task_id=self._run.task_id,
                message_id=message_id,
                kind=kind,
                text=text,
                index=index,
            )
        )

    async def message(
        self,
        message_id: str,
        role: Literal["assistant", "user", "system"],
        blocks: list[Block],
        model: str,
    ) -> None:
        await self._runner.record(
            self._run,
            MessageRecorded(
                session_id=self._run.session_id,
                task_id=self._run.task_id,
                message_id=message_id,
                index=0,  # numbered by the decider
                role=role,
                blocks=blocks,
                model=model,
            ),
            key=f"msg-{message_id}",
        )

    async def permission(self, tool: str, arguments: Mapping[str, Any]) -> bool:
        if tool in self._run.allowed_tools:
            return True
        request_id = f"{self._run.key}-p{len(self._run.asked) + 1}"
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._run.waiting[request_id] = future
        self._run.asked[request_id] = tool
        await self._runner.record(
            self._run,
            PermissionRequested(
                session_id=self._run.session_id,
                task_id=self._run.task_id,
                request_id=request_id,
                tool=tool,
                input=dict(arguments),
                deadline=datetime.now(UTC) + self._runner.permission_window,
            ),
            key=f"perm-{request_id}",
        )
        return await future

    def steered(self) -> list[str]:
        prompts, self._run.steered = self._run.steered, []
        return prompts

    async def bind(self, native_id: str) -> None:
        await self._runner.record(
            self._run,
            AgentSessionBound(
                session_id=self._run.session_id,
                task_id=self._run.task_id,
                agent=self._agent,
                native_id=native_id,
            ),
            key=f"bind-{native_id}",
        )
