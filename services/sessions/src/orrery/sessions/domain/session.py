"""The session aggregate. Pure.

One active task per session, enforced here: a prompt to a busy session is queued (or steered into
the running task); when a task completes or is stopped, the next queued one starts in the same
decision, so the queue can never stall or start two at once. A failed task holds the queue (the
next prompts may depend on it) until the next prompt arrives: that prompt joins the queue and the
head runs.
Stop and permission requests carry deadlines; the runner turns an overdue one into its outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import ClassVar, Literal

import msgspec
from orrery.events import Command, Event
from orrery.events.errors import Rejection
from orrery.events.sessions import (
    AgentSessionBound,
    AgentSettings,
    ChildReported,
    ChildSessionRequested,
    CreateSession,
    DecidePermission,
    DeleteSession,
    ForkSession,
    MessageRecorded,
    PermissionDecided,
    PermissionRequested,
    PromptSteered,
    QueuedTaskRemoved,
    QueueReordered,
    RemoveQueuedPrompt,
    ReorderQueue,
    ResumeTask,
    SessionCreated,
    SessionDeleted,
    SessionUpdated,
    SpawnSession,
    StopRequested,
    StopTask,
    SubmitPrompt,
    TaskCompleted,
    TaskFailed,
    TaskGitState,
    TaskInterrupted,
    TaskQueued,
    TaskStarted,
    TaskStopped,
    TextBlock,
    UpdateSession,
)
from orrery.runtime.decider import Aggregate, Deps

MAX_PROMPT = 100_000
MAX_TITLE = 200
MAX_MODEL = 200
STOP_BOUND = timedelta(seconds=10)
PERMISSION_WINDOW = timedelta(seconds=60)
# The providers that deliver a prompt into the running task (the others refuse a steer rather
# than accept a prompt they would drop).
STEERABLE_AGENTS = frozenset({"builtin", "codex"})

Status = Literal["idle", "running", "stopping", "awaiting_permission"]


@dataclass(frozen=True)
class Session:
    exists: bool = False
    deleted: bool = False
    session_id: str = ""
    worktree_id: str = ""
    title: str = ""
    settings: AgentSettings = field(default_factory=AgentSettings)
    relation: str = "root"
    parent_id: str | None = None
    fork_point: int = 0  # a fork's first messages are its parent's, up to here
    active: str | None = None  # the running task
    stopping: bool = False
    queue: tuple[tuple[str, str], ...] = ()  # (task_id, prompt)
    pending: tuple[str, ...] = ()  # permission request ids awaiting a decision
    messages: int = 0
    tasks: tuple[str, ...] = ()
    interrupted: tuple[tuple[str, str], ...] = ()  # (task_id, prompt) resumable
    prompts: dict[str, str] = field(default_factory=dict)
    children: tuple[str, ...] = ()
    native_id: str = ""  # the agent CLI's own id for the conversation (AgentSessionBound)

    @property
    def status(self) -> Status:
        if self.active is None:
            return "idle"
        if self.stopping:
            return "stopping"
        return "awaiting_permission" if self.pending else "running"


def _ended(state: Session, task_id: str) -> Session:
    if state.active != task_id:
        return state
    return replace(state, active=None, stopping=False, pending=())


def evolve(state: Session, event: Event) -> Session:  # noqa: PLR0911, PLR0912 - a table
    match event:
        case SessionCreated() as e:
            return Session(
                exists=True,
                session_id=e.session_id,
                worktree_id=e.worktree_id,
                title=e.title,
                settings=e.settings,
                relation=e.relation,
                parent_id=e.parent_id,
                fork_point=e.fork_point or 0,
                messages=e.fork_point or 0,
            )
        case TaskQueued(task_id=t, prompt=p):
            return replace(state, queue=(*state.queue, (t, p)), prompts={**state.prompts, t: p})
        case QueuedTaskRemoved(task_id=t):
            return replace(state, queue=tuple(q for q in state.queue if q[0] != t))
        case QueueReordered(task_ids=order):
            by_id = dict(state.queue)
            return replace(state, queue=tuple((t, by_id[t]) for t in order if t in by_id))
        case TaskStarted(task_id=t, prompt=p):
            return replace(
                state,
                active=t,
                stopping=False,
                queue=tuple(q for q in state.queue if q[0] != t),
                tasks=state.tasks if t in state.tasks else (*state.tasks, t),
                interrupted=tuple(i for i in state.interrupted if i[0] != t),
                prompts={**state.prompts, t: p},
            )
        case MessageRecorded(index=index):
            return replace(state, messages=max(state.messages, index + 1))
        case AgentSessionBound(native_id=native):
            return replace(state, native_id=native)
        case PermissionRequested(request_id=r):
            return replace(state, pending=(*state.pending, r))
        case PermissionDecided(request_id=r):
            return replace(state, pending=tuple(p for p in state.pending if p != r))
        case StopRequested():
            return replace(state, stopping=True)
        case TaskCompleted(task_id=t) | TaskFailed(task_id=t) | TaskStopped(task_id=t):
            return _ended(state, t)
        case TaskInterrupted(task_id=t):
            ended = _ended(state, t)
            return replace(ended, interrupted=(*ended.interrupted, (t, state.prompts.get(t, ""))))
        case ChildSessionRequested(child_id=c):
            return replace(state, children=(*state.children, c))
        case SessionUpdated(title=title, settings=settings):
            return replace(state, title=title, settings=settings)
        case SessionDeleted():
            return replace(state, deleted=True, active=None, queue=())
    return state


SESSION = Aggregate[Session](kind="session", initial=Session, evolve=evolve)


def _live(state: Session, session_id: str) -> Session:
    if not state.exists or state.deleted:
        raise Rejection("session.not_found", f"no session {session_id}", {"session_id": session_id})
    return state


def _prompt(text: str) -> str:
    if not text.strip():
        raise Rejection("session.empty_prompt", "the prompt is empty")
    if len(text) > MAX_PROMPT:
        raise Rejection("session.prompt_too_large", f"a prompt has at most {MAX_PROMPT} characters")
    return text


def _title(text: str) -> str:
    if len(text) > MAX_TITLE:
        raise Rejection("session.invalid_title", f"a title has at most {MAX_TITLE} characters")
    return text.strip()


def _start(state: Session, task_id: str, prompt: str, *, resumed: bool = False) -> list[Event]:
    events: list[Event] = [
        TaskStarted(session_id=state.session_id, task_id=task_id, prompt=prompt, resumed=resumed)
    ]
    if not resumed:
        events.append(
            MessageRecorded(
                session_id=state.session_id,
                task_id=task_id,
                message_id=f"{task_id}:prompt",
                index=state.messages,
                role="user",
                blocks=[TextBlock(text=prompt)],
            )
        )
    return events


# --- public commands -------------------------------------------------------------------------


def decide_create(command: CreateSession, state: Session, deps: Deps) -> Sequence[Event]:
    if state.exists:
        raise Rejection("session.exists", f"session {command.session_id} already exists")
    if not command.worktree_id:
        raise Rejection("session.invalid_worktree", "a session needs a worktree")
    return [
        SessionCreated(
            session_id=command.session_id,
            worktree_id=command.worktree_id,
            title=_title(command.title),
            settings=command.settings,
            board_id=command.board_id,
        )
    ]


def decide_prompt(command: SubmitPrompt, state: Session, deps: Deps) -> Sequence[Event]:
    _live(state, command.session_id)
    prompt = _prompt(command.prompt)
    if command.task_id in state.prompts:
        raise Rejection("task.exists", f"task {command.task_id} already exists")
    if state.active is None and state.queue:
        # Idle with a queue held by a failed task: the new prompt joins the queue, the head runs.
        queued = TaskQueued(session_id=state.session_id, task_id=command.task_id, prompt=prompt)
        head, head_prompt = state.queue[0]
        return [queued, *_start(evolve(state, queued), head, head_prompt)]
    if state.active is None:
        return _start(state, command.task_id, prompt)
    if command.mode == "steer":
        if state.settings.agent not in STEERABLE_AGENTS:
            raise Rejection(
                "session.steer_unsupported",
                f"{state.settings.agent} cannot take a prompt mid-task; queue it instead",
            )
        return [PromptSteered(session_id=state.session_id, task_id=state.active, prompt=prompt)]
    return [TaskQueued(session_id=state.session_id, task_id=command.task_id, prompt=prompt)]


def decide_remove_queued(
    command: RemoveQueuedPrompt, state: Session, deps: Deps
) -> Sequence[Event]:
    _live(state, command.session_id)
    if command.task_id not in dict(state.queue):
        raise Rejection("queue.not_found", f"task {command.task_id} is not queued")
    return [QueuedTaskRemoved(session_id=state.session_id, task_id=command.task_id)]


def decide_reorder(command: ReorderQueue, state: Session, deps: Deps) -> Sequence[Event]:
    _live(state, command.session_id)
    queued = [t for t, _ in state.queue]
    if sorted(command.task_ids) != sorted(queued):
        raise Rejection("queue.mismatch", "give every queued task exactly once", {"queued": queued})
    return [QueueReordered(session_id=state.session_id, task_ids=list(command.task_ids))]


def decide_stop(command: StopTask, state: Session, deps: Deps) -> Sequence[Event]:
    _live(state, command.session_id)
    if state.active is None:
        raise Rejection("session.not_running", "the session has no running task")
    if state.stopping:
        return []
    return [
        StopRequested(
            session_id=state.session_id,
            task_id=state.active,
            deadline=deps.clock.now() + STOP_BOUND,
        )
    ]


def decide_resume(command: ResumeTask, state: Session, deps: Deps) -> Sequence[Event]:
    _live(state, command.session_id)
    prompts = dict(state.interrupted)
    if command.task_id not in prompts:
        raise Rejection("task.not_interrupted", f"task {command.task_id} was not interrupted")
    if state.active is not None:
        raise Rejection("session.busy", "the session is running another task")
    return _start(state, command.task_id, prompts[command.task_id], resumed=True)


def decide_permission(command: DecidePermission, state: Session, deps: Deps) -> Sequence[Event]:
    _live(state, command.session_id)
    if command.request_id not in state.pending or state.active is None:
        raise Rejection(
            "permission.not_pending",
            f"permission request {command.request_id} is not waiting for a decision",
        )
    return [
        PermissionDecided(
            session_id=state.session_id,
            task_id=state.active,
            request_id=command.request_id,
            allow=command.allow,
            scope=command.scope,
            decided_by=deps.actor,
            reason=command.reason,
        )
    ]


def decide_fork(command: ForkSession, state: Session, deps: Deps) -> Sequence[Event]:
    _live(state, command.session_id)
    point = state.messages if command.after_message is None else command.after_message
    if not 0 <= point <= state.messages:
        raise Rejection(
            "session.invalid_fork_point",
            f"the conversation has {state.messages} messages; fork after 0 to {state.messages}",
        )
    return [
        ChildSessionRequested(
            session_id=state.session_id,
            child_id=command.child_id,
            relation="fork",
            prompt=_prompt(command.prompt) if command.prompt is not None else None,
            title=_title(command.title),
            settings=state.settings,
            fork_point=point,
        )
    ]


def decide_spawn(command: SpawnSession, state: Session, deps: Deps) -> Sequence[Event]:
    _live(state, command.session_id)
    return [
        ChildSessionRequested(
            session_id=state.session_id,
            child_id=command.child_id,
            relation="spawn",
            prompt=_prompt(command.prompt),
            title=_title(command.title),
            settings=command.settings or state.settings,
        )
    ]


def decide_update(command: UpdateSession, state: Session, deps: Deps) -> Sequence[Event]:
    """What changes; nothing when every field asked for is already so (a retry is harmless)."""
    _live(state, command.session_id)
    if command.model is not None and len(command.model) > MAX_MODEL:
        raise Rejection("session.invalid_model", f"a model name has at most {MAX_MODEL} characters")
    wanted = {
        "model": command.model.strip() if command.model is not None else None,
        "permission_mode": command.permission_mode,
        "thinking": command.thinking,
    }
    if command.title is None and all(v is None for v in wanted.values()):
        raise Rejection(
            "session.empty_update", "say what to change: title, model, permission_mode, thinking"
        )
    title = state.title if command.title is None else _title(command.title)
    settings = msgspec.structs.replace(
        state.settings, **{k: v for k, v in wanted.items() if v is not None}
    )
    changed = [
        name
        for name, before, after in (
            ("title", state.title, title),
            *((k, getattr(state.settings, k), getattr(settings, k)) for k in wanted),
        )
        if before != after
    ]
    if not changed:
        return []
    return [
        SessionUpdated(session_id=state.session_id, title=title, settings=settings, changed=changed)
    ]


def decide_delete(command: DeleteSession, state: Session, deps: Deps) -> Sequence[Event]:
    _live(state, command.session_id)
    if state.children and command.children == "refuse":
        raise Rejection(
            "session.has_children",
            f"the session has {len(state.children)} child sessions: delete them with it"
            " (children=delete) or keep them as roots (children=orphan)",
            {"children": list(state.children)},
        )
    return [
        SessionDeleted(
            session_id=state.session_id,
            children=command.children,
            child_ids=list(state.children),
        )
    ]


# --- internal commands: what the runner observed ----------------------------------------------


class CreateChild(Command, tag="sessions.internal.CreateChild", frozen=True):
    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    worktree_id: str
    parent_id: str
    relation: Literal["fork", "spawn"]
    title: str
    settings: AgentSettings
    fork_point: int | None = None


class Record(Command, tag="sessions.internal.Record", frozen=True):
    """Append what the run produced (messages, permission requests, git state) as is."""

    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    events: list[
        MessageRecorded | PermissionRequested | TaskGitState | ChildReported | AgentSessionBound
    ]


class Finish(Command, tag="sessions.internal.Finish", frozen=True):
    """The active task ended; the next queued task starts in the same decision."""

    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    task_id: str
    outcome: TaskCompleted | TaskFailed | TaskStopped | TaskInterrupted


class Expire(Command, tag="sessions.internal.Expire", frozen=True):
    """A permission request past its deadline is denied (unless decided meanwhile)."""

    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    request_id: str
    reason: str = "timeout"


def decide_create_child(command: CreateChild, state: Session, deps: Deps) -> Sequence[Event]:
    if state.exists:
        return []
    return [
        SessionCreated(
            session_id=command.session_id,
            worktree_id=command.worktree_id,
            title=command.title,
            settings=command.settings,
            relation=command.relation,
            parent_id=command.parent_id,
            fork_point=command.fork_point,
        )
    ]


def decide_record(command: Record, state: Session, deps: Deps) -> Sequence[Event]:
    if not state.exists or state.deleted:
        return []
    events: list[Event] = []
    index = state.messages
    for event in command.events:
        if isinstance(event, MessageRecorded):
            event = msgspec.structs.replace(event, index=index)  # noqa: PLW2901 - numbered here
            index += 1
        events.append(event)
    return events


def decide_finish(command: Finish, state: Session, deps: Deps) -> Sequence[Event]:
    if state.active != command.task_id:
        return []  # already ended (a redelivery, or a stop that won the race)
    events: list[Event] = [command.outcome]
    if state.pending:
        for request_id in state.pending:
            events.append(
                PermissionDecided(
                    session_id=state.session_id,
                    task_id=command.task_id,
                    request_id=request_id,
                    allow=False,
                    decided_by="system",
                    reason="task ended",
                )
            )
    proceed = isinstance(command.outcome, TaskCompleted | TaskStopped)
    if proceed and state.queue and not state.deleted:
        after = evolve(state, command.outcome)
        task_id, prompt = state.queue[0]
        events += _start(after, task_id, prompt)
    return events


def decide_expire(command: Expire, state: Session, deps: Deps) -> Sequence[Event]:
    if command.request_id not in state.pending or state.active is None:
        return []
    return [
        PermissionDecided(
            session_id=state.session_id,
            task_id=state.active,
            request_id=command.request_id,
            allow=False,
            decided_by="system",
            reason=command.reason,
        )
    ]
