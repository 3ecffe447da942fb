"""The environment aggregate (one per worktree) and the git-state aggregate. Pure.

Environment states: stopped → starting → running; starting/running → stopping → stopped; a
failing start or a process that dies → error. Health is separate (healthy, unhealthy, unknown).
A start or stop request is ``pending`` until the reactor records what happened, so a second
request in between is refused rather than queued twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import msgspec
from orrery.events import Command, Event
from orrery.events.errors import Rejection
from orrery.events.worktrees import (
    CaptureGitState,
    EnvironmentHealthChanged,
    EnvironmentLogsFetched,
    EnvironmentLogsRequested,
    EnvironmentStartFailed,
    EnvironmentStartRequested,
    EnvironmentStatusChanged,
    EnvironmentStopRequested,
    EnvStatus,
    FetchEnvironmentLogs,
    GitStateCaptured,
    GitStateRequested,
    Health,
    StartEnvironment,
    StopEnvironment,
)
from orrery.runtime.decider import Aggregate, Deps


@dataclass(frozen=True)
class Environment:
    status: EnvStatus = "stopped"
    health: Health = "unknown"
    pending: str | None = None  # "start" or "stop" while the reactor works on it
    pid: int | None = None


def evolve(state: Environment, event: Event) -> Environment:
    match event:
        case EnvironmentStartRequested():
            return replace(state, pending="start")
        case EnvironmentStopRequested():
            return replace(state, pending="stop")
        case EnvironmentStatusChanged(status=status, pid=pid):
            pending = state.pending
            if status in ("running", "stopped", "error"):
                pending = None
            health = state.health if status in ("starting", "running") else "unknown"
            return replace(state, status=status, pid=pid, pending=pending, health=health)
        case EnvironmentStartFailed():
            return replace(state, pending=None)
        case EnvironmentHealthChanged(health=health):
            return replace(state, health=health)
    return state


ENVIRONMENT = Aggregate[Environment](kind="env", initial=Environment, evolve=evolve)


def decide_start(command: StartEnvironment, state: Environment, deps: Deps) -> Sequence[Event]:
    if state.pending is not None:
        raise Rejection("env.busy", f"a {state.pending} of this environment is already in progress")
    if state.status == "stopping":
        raise Rejection("env.busy", "the environment is stopping")
    if not command.restart and state.status in ("starting", "running"):
        raise Rejection("env.already_running", f"the environment is already {state.status}")
    return [EnvironmentStartRequested(worktree_id=command.worktree_id, restart=command.restart)]


def decide_stop(command: StopEnvironment, state: Environment, deps: Deps) -> Sequence[Event]:
    if state.pending == "stop" or state.status == "stopping":
        raise Rejection("env.busy", "the environment is already stopping")
    if state.status == "stopped" and state.pending is None:
        raise Rejection("env.not_running", "the environment is not running")
    return [EnvironmentStopRequested(worktree_id=command.worktree_id)]


def decide_fetch_logs(
    command: FetchEnvironmentLogs, state: Environment, deps: Deps
) -> Sequence[Event]:
    return [EnvironmentLogsRequested(worktree_id=command.worktree_id)]


class RecordLogs(Command, tag="worktrees.internal.RecordLogs", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    output_seq: int
    lines: int
    truncated: bool
    exit_code: int | None = None
    error: str | None = None


def decide_record_logs(command: RecordLogs, state: Environment, deps: Deps) -> Sequence[Event]:
    return [
        EnvironmentLogsFetched(
            worktree_id=command.worktree_id,
            output_seq=command.output_seq,
            lines=command.lines,
            truncated=command.truncated,
            exit_code=command.exit_code,
            error=command.error,
        )
    ]


class RecordStatus(Command, tag="worktrees.internal.RecordStatus", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    status: EnvStatus
    detail: str = ""
    pid: int | None = None
    ports: list[int] = msgspec.field(default_factory=list)
    app_url: str | None = None
    runner: str = "process"


class FailStart(Command, tag="worktrees.internal.FailStart", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    code: str
    message: str


class RecordHealth(Command, tag="worktrees.internal.RecordHealth", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    health: Health
    message: str = ""


def decide_record_status(command: RecordStatus, state: Environment, deps: Deps) -> Sequence[Event]:
    if command.status == state.status and command.pid == state.pid:
        return []
    return [
        EnvironmentStatusChanged(
            worktree_id=command.worktree_id,
            status=command.status,
            detail=command.detail,
            pid=command.pid,
            ports=command.ports,
            app_url=command.app_url,
            runner=command.runner,
        )
    ]


def decide_fail_start(command: FailStart, state: Environment, deps: Deps) -> Sequence[Event]:
    events: list[Event] = [
        EnvironmentStartFailed(
            worktree_id=command.worktree_id, code=command.code, message=command.message
        )
    ]
    if state.status != "error":
        events.append(
            EnvironmentStatusChanged(
                worktree_id=command.worktree_id, status="error", detail=command.message
            )
        )
    return events


def decide_record_health(command: RecordHealth, state: Environment, deps: Deps) -> Sequence[Event]:
    if command.health == state.health:
        return []
    return [
        EnvironmentHealthChanged(
            worktree_id=command.worktree_id, health=command.health, message=command.message
        )
    ]


# --- git state --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GitStateLog:
    requests: int = 0


def evolve_git(state: GitStateLog, event: Event) -> GitStateLog:
    if isinstance(event, GitStateRequested):
        return replace(state, requests=state.requests + 1)
    return state


GIT_STATE = Aggregate[GitStateLog](kind="gitstate", initial=GitStateLog, evolve=evolve_git)


class RecordGitState(Command, tag="worktrees.internal.RecordGitState", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    branch: str | None
    sha: str | None
    dirty: bool
    purpose: str = ""
    error: str | None = None


def decide_capture(command: CaptureGitState, state: GitStateLog, deps: Deps) -> Sequence[Event]:
    return [GitStateRequested(worktree_id=command.worktree_id, purpose=command.purpose)]


def decide_record_git(command: RecordGitState, state: GitStateLog, deps: Deps) -> Sequence[Event]:
    return [
        GitStateCaptured(
            worktree_id=command.worktree_id,
            branch=command.branch,
            sha=command.sha,
            dirty=command.dirty,
            purpose=command.purpose,
            error=command.error,
        )
    ]
