"""The registry aggregate: every repo's and worktree's lifecycle on one subject (ADR 0004).

Pure. ``decide_*`` functions turn a command and the folded state into events or raise
``Rejection``. The ``Complete*``/``Fail*``/``Record*`` commands are internal: the service's
reactor executes them in-process to record what a side effect did; they are not registered in the
event registry, so nobody can send them over NATS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import msgspec
from orrery.events import Command, Event
from orrery.events.errors import Rejection
from orrery.events.worktrees import (
    AddRepo,
    ArchiveWorktree,
    CreateWorktree,
    DeleteWorktree,
    EnvironmentTemplate,
    ExternalWorktree,
    ExternalWorktreesChanged,
    Filesystem,
    ReconcileRequested,
    ReconcileWorktrees,
    ReloadRepoConfig,
    RemoveRepo,
    RepoAdded,
    RepoAddFailed,
    RepoAddRequested,
    RepoConfigImported,
    RepoConfigReloadRequested,
    RepoRemoved,
    RepoSettings,
    UnarchiveWorktree,
    UpdateWorktree,
    WorktreeArchived,
    WorktreeArchiveRequested,
    WorktreeCreated,
    WorktreeCreationFailed,
    WorktreeDeleted,
    WorktreeDeleteRequested,
    WorktreeFoundOnDisk,
    WorktreeMissingOnDisk,
    WorktreeRequested,
    WorktreeUnarchived,
    WorktreeUpdated,
)
from orrery.runtime.decider import Aggregate, Deps
from orrery.worktrees.domain.slots import SlotError, lowest_free, max_slots, port_block

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
NAME = SLUG
# What git's check-ref-format would refuse outright; the reactor still runs git's own check.
BAD_BRANCH = re.compile(r"(^[-/.])|(\.\.)|([\s~^:?*\[\\])|(@\{)|(/$)|(\.lock$)|(\.$)|(//)")
MAX_NOTES = 64 * 1024
MAX_CONTEXT = 64 * 1024
MAX_URL = 2048
AGGREGATE_ID = "all"

RepoStatus = Literal["adding", "ready", "failed", "removed"]
WorktreeStatus = Literal[
    "creating", "active", "archiving", "archived", "deleting", "deleted", "failed"
]
HOLDS_NAME: frozenset[str] = frozenset({"creating", "active", "archiving", "archived", "deleting"})
HOLDS_SLOT: frozenset[str] = frozenset({"creating", "active", "archiving", "deleting"})


@dataclass(frozen=True)
class RepoState:
    repo_id: str
    slug: str
    source: str
    adopted: bool
    status: RepoStatus = "adding"
    path: str = ""
    default_branch: str = ""
    remote_url: str | None = None
    settings: RepoSettings = field(default_factory=RepoSettings)


@dataclass(frozen=True)
class WorktreeState:
    worktree_id: str
    repo_id: str
    name: str
    branch: str
    unique_id: int | None
    ports: tuple[int, ...]
    status: WorktreeStatus = "creating"
    path: str = ""
    filesystem: Filesystem = "preserved"
    missing: bool = False
    issue_url: str | None = None
    pull_request_url: str | None = None
    notes: str = ""
    context: Mapping[str, Any] = field(default_factory=dict)
    environment: EnvironmentTemplate | None = None


@dataclass(frozen=True)
class Registry:
    repos: Mapping[str, RepoState] = field(default_factory=dict)
    worktrees: Mapping[str, WorktreeState] = field(default_factory=dict)
    external: Mapping[str, tuple[ExternalWorktree, ...]] = field(default_factory=dict)

    def repo(self, repo_id: str) -> RepoState:
        repo = self.repos.get(repo_id)
        if repo is None or repo.status in ("failed", "removed"):
            raise Rejection("repo.not_found", f"no repo {repo_id}", {"repo_id": repo_id})
        return repo

    def worktree(self, worktree_id: str) -> WorktreeState:
        wt = self.worktrees.get(worktree_id)
        if wt is None or wt.status in ("deleted", "failed"):
            raise Rejection(
                "worktree.not_found", f"no worktree {worktree_id}", {"worktree_id": worktree_id}
            )
        return wt


def _with_repo(state: Registry, repo: RepoState) -> Registry:
    return replace(state, repos={**state.repos, repo.repo_id: repo})


def _with_worktree(state: Registry, wt: WorktreeState) -> Registry:
    return replace(state, worktrees={**state.worktrees, wt.worktree_id: wt})


def _evolve_worktree(state: Registry, wt: WorktreeState, event: Event) -> Registry:  # noqa: PLR0911 - a table
    match event:
        case WorktreeCreated(path=path, environment=env):
            return _with_worktree(state, replace(wt, status="active", path=path, environment=env))
        case WorktreeCreationFailed():
            return _with_worktree(state, replace(wt, status="failed", unique_id=None, ports=()))
        case WorktreeUpdated(issue_url=i, pull_request_url=p, notes=n, context=c):
            return _with_worktree(
                state, replace(wt, issue_url=i, pull_request_url=p, notes=n, context=c)
            )
        case WorktreeArchiveRequested(filesystem=fs):
            return _with_worktree(state, replace(wt, status="archiving", filesystem=fs))
        case WorktreeArchived(filesystem=fs):
            return _with_worktree(
                state, replace(wt, status="archived", filesystem=fs, unique_id=None, ports=())
            )
        case WorktreeUnarchived(unique_id=uid, ports=ports):
            return _with_worktree(
                state,
                replace(
                    wt, status="active", unique_id=uid, ports=tuple(ports), filesystem="preserved"
                ),
            )
        case WorktreeDeleteRequested():
            return _with_worktree(state, replace(wt, status="deleting"))
        case WorktreeDeleted():
            return _with_worktree(state, replace(wt, status="deleted", unique_id=None, ports=()))
        case WorktreeMissingOnDisk():
            return _with_worktree(state, replace(wt, missing=True))
        case WorktreeFoundOnDisk():
            return _with_worktree(state, replace(wt, missing=False))
    return state


def evolve(state: Registry, event: Event) -> Registry:  # noqa: PLR0911 - a table
    match event:
        case RepoAddRequested(repo_id=rid, slug=slug, source=source, adopt=adopt):
            return _with_repo(state, RepoState(rid, slug, source, adopt))
        case RepoAdded(repo_id=rid, path=path, default_branch=branch, remote_url=url, settings=s):
            repo = state.repos[rid]
            return _with_repo(
                state,
                replace(
                    repo,
                    status="ready",
                    path=path,
                    default_branch=branch,
                    remote_url=url,
                    settings=s,
                ),
            )
        case RepoAddFailed(repo_id=rid):
            return _with_repo(state, replace(state.repos[rid], status="failed"))
        case RepoConfigImported(repo_id=rid, settings=s):
            return _with_repo(state, replace(state.repos[rid], settings=s))
        case RepoRemoved(repo_id=rid):
            return _with_repo(state, replace(state.repos[rid], status="removed"))
        case WorktreeRequested() as e:
            wt = WorktreeState(
                worktree_id=e.worktree_id,
                repo_id=e.repo_id,
                name=e.name,
                branch=e.branch,
                unique_id=e.unique_id,
                ports=tuple(e.ports),
                issue_url=e.issue_url,
                pull_request_url=e.pull_request_url,
                notes=e.notes,
                context=e.context,
            )
            return _with_worktree(state, wt)
        case ExternalWorktreesChanged(repo_id=rid, worktrees=found):
            return replace(state, external={**state.external, rid: tuple(found)})
    worktree_id = getattr(event, "worktree_id", None)
    if worktree_id is not None and worktree_id in state.worktrees:
        return _evolve_worktree(state, state.worktrees[worktree_id], event)
    return state


REGISTRY = Aggregate[Registry](kind="registry", initial=Registry, evolve=evolve)


def registry_id(_command: Command) -> str:
    return AGGREGATE_ID


# --- validation helpers ---------------------------------------------------------------------


def _check_url(value: str | None, field_name: str) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > MAX_URL or not re.match(r"^https?://[^\s/]+\S*$", value):
        raise Rejection(
            "worktree.invalid_url",
            f"{field_name} must be an http(s) URL",
            {"field": field_name, "value": value[:200]},
        )
    return value


def _check_context(context: Mapping[str, Any]) -> dict[str, Any]:
    if len(msgspec.json.encode(context)) > MAX_CONTEXT:
        raise Rejection("worktree.context_too_large", f"context is larger than {MAX_CONTEXT} bytes")
    return dict(context)


def _check_notes(notes: str) -> str:
    if len(notes) > MAX_NOTES:
        raise Rejection("worktree.notes_too_large", f"notes are longer than {MAX_NOTES} characters")
    return notes


def _check_source(source: str, adopt: bool) -> str:
    cleaned = source.strip()
    if not cleaned or cleaned.startswith("-") or any(c in cleaned for c in "\n\r\x00"):
        raise Rejection("repo.invalid_source", f"{source!r} is not a usable repository URL or path")
    if adopt and not cleaned.startswith("/"):
        raise Rejection(
            "repo.invalid_source", "adopting needs the absolute path of a local checkout"
        )
    return cleaned


# --- repo decisions ---------------------------------------------------------------------------


def decide_add_repo(command: AddRepo, state: Registry, deps: Deps) -> Sequence[Event]:
    if command.repo_id in state.repos:
        raise Rejection("repo.exists", f"repo {command.repo_id} already exists")
    if not SLUG.fullmatch(command.slug):
        raise Rejection(
            "repo.invalid_slug",
            "a slug is 1 to 63 lowercase letters, digits and dashes,"
            " starting with a letter or digit",
            {"slug": command.slug},
        )
    for repo in state.repos.values():
        if repo.slug == command.slug and repo.status in ("adding", "ready"):
            raise Rejection(
                "repo.slug_taken", f"slug {command.slug!r} is taken", {"repo_id": repo.repo_id}
            )
    source = _check_source(command.source, command.adopt)
    return [
        RepoAddRequested(
            repo_id=command.repo_id, slug=command.slug, source=source, adopt=command.adopt
        )
    ]


def decide_reload_config(command: ReloadRepoConfig, state: Registry, deps: Deps) -> Sequence[Event]:
    repo = state.repo(command.repo_id)
    if repo.status != "ready":
        raise Rejection("repo.busy", f"repo {repo.slug} is still being added")
    return [RepoConfigReloadRequested(repo_id=repo.repo_id)]


def decide_remove_repo(command: RemoveRepo, state: Registry, deps: Deps) -> Sequence[Event]:
    repo = state.repo(command.repo_id)
    if repo.status == "adding":
        raise Rejection("repo.busy", f"repo {repo.slug} is still being added")
    live = sorted(
        wt.name
        for wt in state.worktrees.values()
        if wt.repo_id == repo.repo_id and wt.status in HOLDS_NAME
    )
    if live:
        raise Rejection(
            "repo.has_worktrees",
            f"repo {repo.slug} still has worktrees ({', '.join(live)}): delete them first",
            {"worktrees": live},
        )
    if command.delete_files and repo.adopted:
        raise Rejection(
            "repo.adopted",
            f"{repo.path} was adopted, not cloned by Orrery: its files are never deleted",
        )
    return [
        RepoRemoved(
            repo_id=repo.repo_id, slug=repo.slug, path=repo.path, delete_files=command.delete_files
        )
    ]


# --- worktree decisions -----------------------------------------------------------------------


def make_decide_create(port_base: int):  # type: ignore[no-untyped-def]
    def decide_create(command: CreateWorktree, state: Registry, deps: Deps) -> Sequence[Event]:
        if command.worktree_id in state.worktrees:
            raise Rejection("worktree.exists", f"worktree {command.worktree_id} already exists")
        repo = state.repo(command.repo_id)
        if repo.status != "ready":
            raise Rejection("repo.busy", f"repo {repo.slug} is still being added")
        if not NAME.fullmatch(command.name):
            raise Rejection(
                "worktree.invalid_name",
                "a worktree name is 1 to 63 lowercase letters, digits and dashes,"
                " starting with a letter or digit",
                {"name": command.name},
            )
        for wt in state.worktrees.values():
            if wt.repo_id == repo.repo_id and wt.name == command.name and wt.status in HOLDS_NAME:
                raise Rejection(
                    "worktree.name_taken",
                    f"repo {repo.slug} already has a worktree named {command.name!r}",
                    {"worktree_id": wt.worktree_id},
                )
        branch = command.branch or command.name
        if len(branch) > 200 or BAD_BRANCH.search(branch):
            raise Rejection("worktree.invalid_branch", f"{branch!r} is not a valid branch name")
        if command.base is not None and (not command.base or BAD_BRANCH.search(command.base)):
            raise Rejection("worktree.invalid_base", f"{command.base!r} is not a valid base ref")
        taken = [wt.unique_id for wt in state.worktrees.values() if wt.unique_id is not None]
        unique_id = lowest_free(taken)
        if unique_id > max_slots(port_base):
            raise Rejection(
                "worktree.no_ports",
                f"all {max_slots(port_base)} port blocks are in use: archive a worktree first",
            )
        try:
            ports = port_block(unique_id, port_base)
        except SlotError as exc:
            raise Rejection(SlotError.code, str(exc)) from None
        return [
            WorktreeRequested(
                worktree_id=command.worktree_id,
                repo_id=repo.repo_id,
                name=command.name,
                branch=branch,
                base=command.base,
                new_branch=command.new_branch,
                unique_id=unique_id,
                ports=ports,
                issue_url=_check_url(command.issue_url, "issue_url"),
                pull_request_url=_check_url(command.pull_request_url, "pull_request_url"),
                notes=_check_notes(command.notes),
                context=_check_context(command.context),
            )
        ]

    return decide_create


def decide_update(command: UpdateWorktree, state: Registry, deps: Deps) -> Sequence[Event]:
    wt = state.worktree(command.worktree_id)
    issue = (
        wt.issue_url if command.issue_url is None else _check_url(command.issue_url, "issue_url")
    )
    pr = (
        wt.pull_request_url
        if command.pull_request_url is None
        else _check_url(command.pull_request_url, "pull_request_url")
    )
    notes = wt.notes if command.notes is None else _check_notes(command.notes)
    context = dict(wt.context) if command.context is None else _check_context(command.context)
    if (issue, pr, notes, context) == (
        wt.issue_url,
        wt.pull_request_url,
        wt.notes,
        dict(wt.context),
    ):
        return []
    return [
        WorktreeUpdated(
            worktree_id=wt.worktree_id,
            issue_url=issue,
            pull_request_url=pr,
            notes=notes,
            context=context,
        )
    ]


def _busy(wt: WorktreeState) -> Rejection:
    return Rejection("worktree.busy", f"worktree {wt.name} is {wt.status}", {"status": wt.status})


def decide_archive(command: ArchiveWorktree, state: Registry, deps: Deps) -> Sequence[Event]:
    wt = state.worktree(command.worktree_id)
    if wt.status == "archived":
        raise Rejection("worktree.archived", f"worktree {wt.name} is already archived")
    if wt.status != "active":
        raise _busy(wt)
    return [WorktreeArchiveRequested(worktree_id=wt.worktree_id, filesystem=command.filesystem)]


def make_decide_unarchive(port_base: int):  # type: ignore[no-untyped-def]
    def decide_unarchive(
        command: UnarchiveWorktree, state: Registry, deps: Deps
    ) -> Sequence[Event]:
        wt = state.worktree(command.worktree_id)
        if wt.status != "archived":
            raise Rejection("worktree.not_archived", f"worktree {wt.name} is not archived")
        if wt.filesystem == "deleted":
            raise Rejection(
                "worktree.files_deleted",
                f"worktree {wt.name} was archived with its files deleted; create a new worktree"
                f" from branch {wt.branch!r} instead",
            )
        taken = [w.unique_id for w in state.worktrees.values() if w.unique_id is not None]
        unique_id = lowest_free(taken)
        try:
            ports = port_block(unique_id, port_base)
        except SlotError as exc:
            raise Rejection(SlotError.code, str(exc)) from None
        return [WorktreeUnarchived(worktree_id=wt.worktree_id, unique_id=unique_id, ports=ports)]

    return decide_unarchive


def decide_delete(command: DeleteWorktree, state: Registry, deps: Deps) -> Sequence[Event]:
    wt = state.worktree(command.worktree_id)
    if wt.status not in ("active", "archived"):
        raise _busy(wt)
    return [WorktreeDeleteRequested(worktree_id=wt.worktree_id, delete_files=command.delete_files)]


def decide_reconcile(command: ReconcileWorktrees, state: Registry, deps: Deps) -> Sequence[Event]:
    if command.repo_id is not None:
        state.repo(command.repo_id)
    return [ReconcileRequested(repo_id=command.repo_id)]


# --- internal commands: outcomes of side effects --------------------------------------------


class CompleteRepoAdd(Command, tag="worktrees.internal.CompleteRepoAdd", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    repo_id: str
    path: str
    default_branch: str
    remote_url: str | None
    settings: RepoSettings


class FailRepoAdd(Command, tag="worktrees.internal.FailRepoAdd", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    repo_id: str
    code: str
    message: str


class ImportRepoConfig(Command, tag="worktrees.internal.ImportRepoConfig", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    repo_id: str
    settings: RepoSettings


class CompleteWorktreeCreation(
    Command, tag="worktrees.internal.CompleteWorktreeCreation", frozen=True
):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    path: str
    head_sha: str | None
    base_ref: str | None
    environment: EnvironmentTemplate | None
    copied: list[str] = msgspec.field(default_factory=list)


class FailWorktreeCreation(Command, tag="worktrees.internal.FailWorktreeCreation", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    code: str
    message: str


class CompleteArchive(Command, tag="worktrees.internal.CompleteArchive", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    files_removed: int = 0


class CompleteDelete(Command, tag="worktrees.internal.CompleteDelete", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    files_deleted: bool
    was_missing: bool = False


class RecordDrift(Command, tag="worktrees.internal.RecordDrift", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    worktree_id: str
    missing: bool


class RecordExternal(Command, tag="worktrees.internal.RecordExternal", frozen=True):
    CONTEXT: ClassVar[str] = "worktrees"
    repo_id: str
    worktrees: list[ExternalWorktree]


def decide_complete_repo_add(
    command: CompleteRepoAdd, state: Registry, deps: Deps
) -> Sequence[Event]:
    repo = state.repos.get(command.repo_id)
    if repo is None or repo.status != "adding":
        return []
    return [
        RepoAdded(
            repo_id=repo.repo_id,
            slug=repo.slug,
            path=command.path,
            default_branch=command.default_branch,
            remote_url=command.remote_url,
            adopted=repo.adopted,
            settings=command.settings,
        )
    ]


def decide_fail_repo_add(command: FailRepoAdd, state: Registry, deps: Deps) -> Sequence[Event]:
    repo = state.repos.get(command.repo_id)
    if repo is None or repo.status != "adding":
        return []
    return [
        RepoAddFailed(
            repo_id=repo.repo_id, slug=repo.slug, code=command.code, message=command.message
        )
    ]


def decide_import_config(command: ImportRepoConfig, state: Registry, deps: Deps) -> Sequence[Event]:
    repo = state.repos.get(command.repo_id)
    if repo is None or repo.status != "ready":
        return []
    return [RepoConfigImported(repo_id=repo.repo_id, settings=command.settings)]


def decide_complete_creation(
    command: CompleteWorktreeCreation, state: Registry, deps: Deps
) -> Sequence[Event]:
    wt = state.worktrees.get(command.worktree_id)
    if wt is None or wt.status != "creating":
        return []
    return [
        WorktreeCreated(
            worktree_id=wt.worktree_id,
            repo_id=wt.repo_id,
            path=command.path,
            branch=wt.branch,
            head_sha=command.head_sha,
            base_ref=command.base_ref,
            environment=command.environment,
            copied=command.copied,
        )
    ]


def decide_fail_creation(
    command: FailWorktreeCreation, state: Registry, deps: Deps
) -> Sequence[Event]:
    wt = state.worktrees.get(command.worktree_id)
    if wt is None or wt.status != "creating":
        return []
    return [
        WorktreeCreationFailed(
            worktree_id=wt.worktree_id,
            repo_id=wt.repo_id,
            code=command.code,
            message=command.message,
        )
    ]


def decide_complete_archive(
    command: CompleteArchive, state: Registry, deps: Deps
) -> Sequence[Event]:
    wt = state.worktrees.get(command.worktree_id)
    if wt is None or wt.status != "archiving":
        return []
    return [
        WorktreeArchived(
            worktree_id=wt.worktree_id,
            filesystem=wt.filesystem,
            files_removed=command.files_removed,
            released_unique_id=wt.unique_id or 0,
        )
    ]


def decide_complete_delete(command: CompleteDelete, state: Registry, deps: Deps) -> Sequence[Event]:
    wt = state.worktrees.get(command.worktree_id)
    if wt is None or wt.status != "deleting":
        return []
    return [
        WorktreeDeleted(
            worktree_id=wt.worktree_id,
            files_deleted=command.files_deleted,
            was_missing=command.was_missing,
        )
    ]


def decide_record_drift(command: RecordDrift, state: Registry, deps: Deps) -> Sequence[Event]:
    wt = state.worktrees.get(command.worktree_id)
    if wt is None or wt.status not in ("active", "archived") or wt.missing == command.missing:
        return []
    if wt.status == "archived" and wt.filesystem == "deleted":
        return []
    if command.missing:
        return [WorktreeMissingOnDisk(worktree_id=wt.worktree_id, path=wt.path)]
    return [WorktreeFoundOnDisk(worktree_id=wt.worktree_id, path=wt.path)]


def decide_record_external(command: RecordExternal, state: Registry, deps: Deps) -> Sequence[Event]:
    repo = state.repos.get(command.repo_id)
    if repo is None or repo.status != "ready":
        return []
    found = tuple(sorted(command.worktrees, key=lambda w: w.path))
    if found == state.external.get(command.repo_id, ()):
        return []
    return [ExternalWorktreesChanged(repo_id=repo.repo_id, worktrees=list(found))]
