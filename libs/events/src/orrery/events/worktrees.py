"""Worktrees context: repos, git worktrees, their environments and git state.

Subjects (one aggregate each):
- ``worktrees.evt.registry.all``: every repo's and worktree's lifecycle. One subject, so the
  rules that span them (unique repo slugs, unique names per repo, ``unique_id`` = the lowest free
  integer across all worktrees) are decided exactly under optimistic concurrency.
- ``worktrees.evt.env.<worktree_id>``: the environment's state machine and health.
- ``worktrees.evt.gitstate.<worktree_id>``: HEAD, branch and dirty flag captured on request.

A ``...Requested`` event is a decision; the worktrees service's reactor does the side effect
(clone, ``git worktree add``, start a process) and records the outcome as another event with the
same correlation id. Secrets (tokens) never appear in any event.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec
from orrery.events.base import Command, Event
from orrery.events.registry import Registry

Filesystem = Literal["preserved", "cleaned", "deleted"]
EnvStatus = Literal["stopped", "starting", "running", "stopping", "error"]
Health = Literal["healthy", "unhealthy", "unknown"]

# --- value objects carried in events ---------------------------------------------------------


class HealthTemplate(msgspec.Struct, frozen=True, kw_only=True):
    type: Literal["http", "tcp"]
    url: str | None = None
    host: str = "127.0.0.1"
    port: int | str | None = None
    interval_s: float = 5
    timeout_s: float = 1
    start_grace_s: float = 3


class DockerTemplate(msgspec.Struct, frozen=True, kw_only=True):
    image: str
    command: str | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    workdir: str = "/workspace"


class EnvironmentTemplate(msgspec.Struct, frozen=True, kw_only=True):
    """A repo's environment commands as Jinja2 templates (rendered at each start)."""

    start: str
    stop: str | None = None
    health: HealthTemplate | None = None
    app_url: str | None = None
    logs: str | None = None
    runner: Literal["process", "docker"] = "process"
    docker: DockerTemplate | None = None


class RepoSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What was imported from the repo's ``.orrery.yml`` (or converted ``.agor.yml``)."""

    environment: EnvironmentTemplate | None = None
    copy: list[str] = msgspec.field(default_factory=list)
    source: str = ""  # ".orrery.yml", ".agor.yml" or "" (none found)
    error: str | None = None  # why the file could not be used; then nothing was imported


class ExternalWorktree(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    branch: str | None = None
    head: str | None = None


class EnvironmentOutput(msgspec.Struct, frozen=True, kw_only=True):
    """A batch of an environment's output lines on ``worktrees.out.log.<worktree_id>`` (the
    short-retention output stream, not the event log)."""

    lines: list[str]
    at: str  # ISO-8601 UTC


# --- commands --------------------------------------------------------------------------------


class AddRepo(Command, tag="worktrees.AddRepo", frozen=True):
    """Clone ``source`` (a URL, ``file://`` URL or local path) into Orrery's repos directory, or
    with ``adopt`` use the existing local checkout at ``source`` in place."""

    CONTEXT: ClassVar[str] = "worktrees"
    repo_id: str
    slug: str
    source: str
    adopt: bool = False


class ReloadRepoConfig(Command, tag="worktrees.ReloadRepoConfig", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    repo_id: str


class RemoveRepo(Command, tag="worktrees.RemoveRepo", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    repo_id: str
    delete_files: bool = False


class CreateWorktree(Command, tag="worktrees.CreateWorktree", frozen=True):
    """A new branch ``branch`` from ``base`` (default: the repo's default branch), or with
    ``new_branch=False`` the existing ``branch``. ``branch`` defaults to ``name``."""

    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    repo_id: str
    name: str
    branch: str | None = None
    base: str | None = None
    new_branch: bool = True
    issue_url: str | None = None
    pull_request_url: str | None = None
    notes: str = ""
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class UpdateWorktree(Command, tag="worktrees.UpdateWorktree", frozen=True):
    """Fields left ``None`` keep their value; ``""`` clears a URL."""

    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    issue_url: str | None = None
    pull_request_url: str | None = None
    notes: str | None = None
    context: dict[str, Any] | None = None


class ArchiveWorktree(Command, tag="worktrees.ArchiveWorktree", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    filesystem: Filesystem = "preserved"


class UnarchiveWorktree(Command, tag="worktrees.UnarchiveWorktree", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str


class DeleteWorktree(Command, tag="worktrees.DeleteWorktree", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    delete_files: bool = True


class ReconcileWorktrees(Command, tag="worktrees.ReconcileWorktrees", frozen=True):
    """Compare the log with ``git worktree list`` now (the service also does it periodically)."""

    CONTEXT: ClassVar[str] = "worktrees"
    repo_id: str | None = None


class StartEnvironment(Command, tag="worktrees.StartEnvironment", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    restart: bool = False


class StopEnvironment(Command, tag="worktrees.StopEnvironment", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str


class FetchEnvironmentLogs(Command, tag="worktrees.FetchEnvironmentLogs", frozen=True):
    """Run the environment's ``logs`` command now (10 s at most, 100 KB kept)."""

    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str


class CaptureGitState(Command, tag="worktrees.CaptureGitState", frozen=True):
    """Ask for the worktree's HEAD sha, branch and dirty flag (sessions: at task start and end)."""

    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    purpose: str = ""


# --- registry events -------------------------------------------------------------------------


class RepoAddRequested(Event, tag="worktrees.RepoAddRequested", frozen=True):
    repo_id: str
    slug: str
    source: str
    adopt: bool


class RepoAdded(Event, tag="worktrees.RepoAdded", frozen=True):
    repo_id: str
    slug: str
    path: str
    default_branch: str
    remote_url: str | None
    adopted: bool
    settings: RepoSettings


class RepoAddFailed(Event, tag="worktrees.RepoAddFailed", frozen=True):
    repo_id: str
    slug: str
    code: str
    message: str


class RepoConfigReloadRequested(Event, tag="worktrees.RepoConfigReloadRequested", frozen=True):
    repo_id: str


class RepoConfigImported(Event, tag="worktrees.RepoConfigImported", frozen=True):
    repo_id: str
    settings: RepoSettings


class RepoRemoved(Event, tag="worktrees.RepoRemoved", frozen=True):
    repo_id: str
    slug: str
    path: str
    delete_files: bool


class WorktreeRequested(Event, tag="worktrees.WorktreeRequested", frozen=True):
    worktree_id: str
    repo_id: str
    name: str
    branch: str
    base: str | None
    new_branch: bool
    unique_id: int
    ports: list[int]
    issue_url: str | None = None
    pull_request_url: str | None = None
    notes: str = ""
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class WorktreeCreated(Event, tag="worktrees.WorktreeCreated", frozen=True):
    worktree_id: str
    repo_id: str
    path: str
    branch: str
    head_sha: str | None
    base_ref: str | None
    environment: EnvironmentTemplate | None  # the repo's template, snapshotted at creation
    copied: list[str] = msgspec.field(default_factory=list)


class WorktreeCreationFailed(Event, tag="worktrees.WorktreeCreationFailed", frozen=True):
    worktree_id: str
    repo_id: str
    code: str
    message: str


class WorktreeUpdated(Event, tag="worktrees.WorktreeUpdated", frozen=True):
    """The new values of every metadata field."""

    worktree_id: str
    issue_url: str | None
    pull_request_url: str | None
    notes: str
    context: dict[str, Any]


class WorktreeArchiveRequested(Event, tag="worktrees.WorktreeArchiveRequested", frozen=True):
    worktree_id: str
    filesystem: Filesystem


class WorktreeArchived(Event, tag="worktrees.WorktreeArchived", frozen=True):
    """The environment was stopped, the filesystem action done, and the ports released."""

    worktree_id: str
    filesystem: Filesystem
    files_removed: int = 0
    released_unique_id: int = 0


class WorktreeUnarchived(Event, tag="worktrees.WorktreeUnarchived", frozen=True):
    worktree_id: str
    unique_id: int
    ports: list[int]


class WorktreeDeleteRequested(Event, tag="worktrees.WorktreeDeleteRequested", frozen=True):
    worktree_id: str
    delete_files: bool


class WorktreeDeleted(Event, tag="worktrees.WorktreeDeleted", frozen=True):
    worktree_id: str
    files_deleted: bool
    was_missing: bool = False


class ReconcileRequested(Event, tag="worktrees.ReconcileRequested", frozen=True):
    repo_id: str | None = None


class WorktreeMissingOnDisk(Event, tag="worktrees.WorktreeMissingOnDisk", frozen=True):
    """Drift: the log says the worktree exists, but git and the filesystem no longer have it."""

    worktree_id: str
    path: str


class WorktreeFoundOnDisk(Event, tag="worktrees.WorktreeFoundOnDisk", frozen=True):
    """Drift resolved: a worktree reported missing is back on disk."""

    worktree_id: str
    path: str


class ExternalWorktreesChanged(Event, tag="worktrees.ExternalWorktreesChanged", frozen=True):
    """Drift: worktrees of the repo that git lists but Orrery did not create (the full set)."""

    repo_id: str
    worktrees: list[ExternalWorktree]


# --- environment events ----------------------------------------------------------------------


class EnvironmentStartRequested(Event, tag="worktrees.EnvironmentStartRequested", frozen=True):
    worktree_id: str
    restart: bool = False


class EnvironmentStopRequested(Event, tag="worktrees.EnvironmentStopRequested", frozen=True):
    worktree_id: str


class EnvironmentStatusChanged(Event, tag="worktrees.EnvironmentStatusChanged", frozen=True):
    worktree_id: str
    status: EnvStatus
    detail: str = ""
    pid: int | None = None
    ports: list[int] = msgspec.field(default_factory=list)
    app_url: str | None = None
    runner: str = "process"


class EnvironmentStartFailed(Event, tag="worktrees.EnvironmentStartFailed", frozen=True):
    """A start refused at execution time (ports taken, no environment, archived worktree...)."""

    worktree_id: str
    code: str
    message: str


class EnvironmentHealthChanged(Event, tag="worktrees.EnvironmentHealthChanged", frozen=True):
    worktree_id: str
    health: Health
    message: str = ""


class EnvironmentLogsRequested(Event, tag="worktrees.EnvironmentLogsRequested", frozen=True):
    worktree_id: str


class EnvironmentLogsFetched(Event, tag="worktrees.EnvironmentLogsFetched", frozen=True):
    """The logs command ran; its output is the message at ``output_seq`` of the output stream
    (``worktrees.out.logscmd.<worktree_id>``), not in the log."""

    worktree_id: str
    output_seq: int
    lines: int
    truncated: bool
    exit_code: int | None = None
    error: str | None = None


# --- git state -------------------------------------------------------------------------------


class GitStateRequested(Event, tag="worktrees.GitStateRequested", frozen=True):
    worktree_id: str
    purpose: str = ""


class GitStateCaptured(Event, tag="worktrees.GitStateCaptured", frozen=True):
    worktree_id: str
    branch: str | None
    sha: str | None
    dirty: bool
    purpose: str = ""
    error: str | None = None


CLASSES: tuple[type[Event] | type[Command], ...] = (
    AddRepo,
    ReloadRepoConfig,
    RemoveRepo,
    CreateWorktree,
    UpdateWorktree,
    ArchiveWorktree,
    UnarchiveWorktree,
    DeleteWorktree,
    ReconcileWorktrees,
    StartEnvironment,
    StopEnvironment,
    FetchEnvironmentLogs,
    CaptureGitState,
    RepoAddRequested,
    RepoAdded,
    RepoAddFailed,
    RepoConfigReloadRequested,
    RepoConfigImported,
    RepoRemoved,
    WorktreeRequested,
    WorktreeCreated,
    WorktreeCreationFailed,
    WorktreeUpdated,
    WorktreeArchiveRequested,
    WorktreeArchived,
    WorktreeUnarchived,
    WorktreeDeleteRequested,
    WorktreeDeleted,
    ReconcileRequested,
    WorktreeMissingOnDisk,
    WorktreeFoundOnDisk,
    ExternalWorktreesChanged,
    EnvironmentStartRequested,
    EnvironmentStopRequested,
    EnvironmentStatusChanged,
    EnvironmentStartFailed,
    EnvironmentHealthChanged,
    EnvironmentLogsRequested,
    EnvironmentLogsFetched,
    GitStateRequested,
    GitStateCaptured,
)


def register_upcasters(registry: Registry) -> None:
    """No older versions yet."""
