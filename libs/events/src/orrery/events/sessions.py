"""Sessions context: sessions, their tasks (one per prompt), messages, the queue, permission
requests, stop, fork and spawn.

One subject per session, ``sessions.evt.session.<session_id>``: everything that must be decided
against the session's state (one active task, the queue, pending permissions) lives there.
Token deltas are not events: they go to ``sessions.out.delta.<session_id>`` on the short-retention
output stream; complete messages are durable ``MessageRecorded`` events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

import msgspec
from orrery.events.base import Command, Event
from orrery.events.registry import Registry

Relation = Literal["root", "fork", "spawn"]
PermissionMode = Literal["ask", "auto", "allow-all"]
QueueMode = Literal["queue", "steer"]
ChildrenAction = Literal["refuse", "delete", "orphan"]

# --- value objects --------------------------------------------------------------------------


class TextBlock(msgspec.Struct, frozen=True, tag="text"):
    text: str


class ThinkingBlock(msgspec.Struct, frozen=True, tag="thinking"):
    text: str


class ToolUseBlock(msgspec.Struct, frozen=True, tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(msgspec.Struct, frozen=True, tag="tool_result"):
    tool_use_id: str
    content: str
    is_error: bool = False


class SystemBlock(msgspec.Struct, frozen=True, tag="system"):
    text: str


Block = TextBlock | ThinkingBlock | ToolUseBlock | ToolResultBlock | SystemBlock


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class GitSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    branch: str | None
    sha: str | None
    dirty: bool
    error: str | None = None


class AgentSettings(msgspec.Struct, frozen=True, kw_only=True):
    agent: str = "builtin"  # builtin, claude-code, codex, gemini, opencode
    model: str = ""
    permission_mode: PermissionMode = "ask"
    thinking: Literal["auto", "off"] = "auto"


class SessionDelta(msgspec.Struct, frozen=True, kw_only=True):
    """One streamed piece of a message being written (output stream, not the log)."""

    session_id: str
    task_id: str
    message_id: str
    kind: Literal["text", "thinking", "tool_input"]
    text: str
    index: int  # position of this delta within its message, from 0


# --- commands --------------------------------------------------------------------------------


class CreateSession(Command, tag="sessions.CreateSession", frozen=True):
    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    worktree_id: str
    title: str = ""
    settings: AgentSettings = AgentSettings()
    board_id: str | None = None


class SubmitPrompt(Command, tag="sessions.SubmitPrompt", frozen=True):
    """Starts a task when the session is idle; else queued, or with ``mode=steer`` delivered to
    the running agent."""

    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    task_id: str
    prompt: str
    mode: QueueMode = "queue"


class RemoveQueuedPrompt(Command, tag="sessions.RemoveQueuedPrompt", frozen=True):
    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    task_id: str


class ReorderQueue(Command, tag="sessions.ReorderQueue", frozen=True):
    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    task_ids: list[str]


class StopTask(Command, tag="sessions.StopTask", frozen=True):
    CONTEXT: ClassVar[str] = "sessions"
    session_id: str


class ResumeTask(Command, tag="sessions.ResumeTask", frozen=True):
    """Run an interrupted task again, on the conversation recorded so far."""

    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    task_id: str


class DecidePermission(Command, tag="sessions.DecidePermission", frozen=True):
    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    request_id: str
    allow: bool
    scope: Literal["once", "session"] = "once"
    reason: str = ""


class ForkSession(Command, tag="sessions.ForkSession", frozen=True):
    """A sibling sharing the conversation up to ``after_message`` (default: all of it)."""

    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    child_id: str
    prompt: str | None = None
    after_message: int | None = None
    title: str = ""


class SpawnSession(Command, tag="sessions.SpawnSession", frozen=True):
    """A fresh child with its own prompt; it reports back to this session when done."""

    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    child_id: str
    prompt: str
    title: str = ""
    settings: AgentSettings | None = None


class UpdateSession(Command, tag="sessions.UpdateSession", frozen=True):
    """Change a session's title or its agent's settings; what is ``None`` stays. New settings
    apply from the session's next task (a running one keeps its own)."""

    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    title: str | None = None
    model: str | None = None
    permission_mode: PermissionMode | None = None
    thinking: Literal["auto", "off"] | None = None


class DeleteSession(Command, tag="sessions.DeleteSession", frozen=True):
    CONTEXT: ClassVar[str] = "sessions"
    session_id: str
    children: ChildrenAction = "refuse"


# --- events ----------------------------------------------------------------------------------


class SessionCreated(Event, tag="sessions.SessionCreated", frozen=True):
    session_id: str
    worktree_id: str
    title: str
    settings: AgentSettings
    board_id: str | None = None
    relation: Relation = "root"
    parent_id: str | None = None
    # A fork shares the parent's first ``fork_point`` messages; a spawn starts empty.
    fork_point: int | None = None


class ChildSessionRequested(Event, tag="sessions.ChildSessionRequested", frozen=True):
    """On the parent: a fork or spawn was asked for; the child is created from it."""

    session_id: str
    child_id: str
    relation: Relation
    prompt: str | None
    title: str
    settings: AgentSettings
    fork_point: int | None = None


class TaskQueued(Event, tag="sessions.TaskQueued", frozen=True):
    session_id: str
    task_id: str
    prompt: str


class QueuedTaskRemoved(Event, tag="sessions.QueuedTaskRemoved", frozen=True):
    session_id: str
    task_id: str


class QueueReordered(Event, tag="sessions.QueueReordered", frozen=True):
    session_id: str
    task_ids: list[str]


class TaskStarted(Event, tag="sessions.TaskStarted", frozen=True):
    session_id: str
    task_id: str
    prompt: str
    resumed: bool = False


class PromptSteered(Event, tag="sessions.PromptSteered", frozen=True):
    """A prompt delivered into the running task instead of queued after it."""

    session_id: str
    task_id: str
    prompt: str


class MessageRecorded(Event, tag="sessions.MessageRecorded", frozen=True):
    session_id: str
    task_id: str
    message_id: str
    index: int  # position in the session's conversation, from 0
    role: Literal["user", "assistant", "system"]
    blocks: list[Block]
    model: str | None = None


class TaskGitState(Event, tag="sessions.TaskGitState", frozen=True):
    session_id: str
    task_id: str
    moment: Literal["start", "end"]
    git: GitSnapshot


class AgentSessionBound(Event, tag="sessions.AgentSessionBound", frozen=True):
    """The agent CLI's own id for this conversation (Claude Code's session, Codex's thread,
    OpenCode's session): a later task, a restart or a fork resumes it natively."""

    session_id: str
    task_id: str
    agent: str
    native_id: str


class PermissionRequested(Event, tag="sessions.PermissionRequested", frozen=True):
    session_id: str
    task_id: str
    request_id: str
    tool: str
    input: dict[str, Any]
    deadline: datetime


class PermissionDecided(Event, tag="sessions.PermissionDecided", frozen=True):
    session_id: str
    task_id: str
    request_id: str
    allow: bool
    scope: Literal["once", "session"] = "once"
    decided_by: str = ""
    reason: str = ""  # "timeout" and "stopped" when no one decided


class StopRequested(Event, tag="sessions.StopRequested", frozen=True):
    session_id: str
    task_id: str
    deadline: datetime


class TaskCompleted(Event, tag="sessions.TaskCompleted", frozen=True):
    session_id: str
    task_id: str
    model: str
    usage: Usage
    cost_usd: float
    raw_usage: dict[str, Any] = msgspec.field(default_factory=dict)
    duration_ms: int = 0
    result: str = ""  # the final text, which a spawned child reports to its parent


class TaskFailed(Event, tag="sessions.TaskFailed", frozen=True):
    session_id: str
    task_id: str
    code: str
    message: str
    usage: Usage = Usage()
    cost_usd: float = 0.0


class TaskStopped(Event, tag="sessions.TaskStopped", frozen=True):
    session_id: str
    task_id: str
    how: Literal["interrupt", "signal", "kill", "abandoned"] = "interrupt"


class TaskInterrupted(Event, tag="sessions.TaskInterrupted", frozen=True):
    """The run stopped without an outcome (the service died): not lost, not stuck: resumable."""

    session_id: str
    task_id: str
    reason: str


class ChildReported(Event, tag="sessions.ChildReported", frozen=True):
    """On the parent: a spawned child finished a task (its final text)."""

    session_id: str
    child_id: str
    task_id: str
    outcome: Literal["completed", "failed", "stopped"]
    result: str


class SessionUpdated(Event, tag="sessions.SessionUpdated", frozen=True):
    """The session's title and settings after a change (both whole, whichever changed)."""

    session_id: str
    title: str
    settings: AgentSettings
    changed: list[str]  # which of title, model, permission_mode, thinking


class SessionDeleted(Event, tag="sessions.SessionDeleted", frozen=True):
    session_id: str
    children: ChildrenAction
    child_ids: list[str] = msgspec.field(default_factory=list)


CLASSES: tuple[type[Event] | type[Command], ...] = (
    CreateSession,
    SubmitPrompt,
    RemoveQueuedPrompt,
    ReorderQueue,
    StopTask,
    ResumeTask,
    DecidePermission,
    ForkSession,
    SpawnSession,
    UpdateSession,
    DeleteSession,
    SessionCreated,
    ChildSessionRequested,
    TaskQueued,
    QueuedTaskRemoved,
    QueueReordered,
    TaskStarted,
    PromptSteered,
    MessageRecorded,
    TaskGitState,
    AgentSessionBound,
    PermissionRequested,
    PermissionDecided,
    StopRequested,
    TaskCompleted,
    TaskFailed,
    TaskStopped,
    TaskInterrupted,
    ChildReported,
    SessionUpdated,
    SessionDeleted,
)


def register_upcasters(registry: Registry) -> None:
    """No older versions yet."""
