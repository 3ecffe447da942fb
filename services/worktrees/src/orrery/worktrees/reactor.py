"""The reactor: does the side effects the worktrees log asks for and records their outcomes.

It reads ``worktrees.evt.>`` through a durable consumer and acks an event once its outcome is
recorded. Outcomes are internal commands whose ids derive from the triggering event's id, so a
reactor killed half-way and handed the event again records each outcome once. Work for one repo
or worktree runs in log order; different ones run concurrently. One instance reacts at a time
(a PostgreSQL advisory lock): environments are processes on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from orrery.events import Command, Envelope, Event, Registry, subjects
from orrery.events.errors import EventsError
from orrery.events.worktrees import (
    EnvironmentLogsRequested,
    EnvironmentStartRequested,
    EnvironmentStopRequested,
    GitStateRequested,
    ReconcileRequested,
    RepoAddRequested,
    RepoConfigReloadRequested,
    RepoRemoved,
    RepoSettings,
    WorktreeArchiveRequested,
    WorktreeDeleteRequested,
    WorktreeRequested,
)
from orrery.runtime import topology
from orrery.runtime.commands.handling import CommandBus
from orrery.runtime.errors import RuntimeFailure
from orrery.runtime.eventstore.jetstream import NATS_UNAVAILABLE, decode_msg
from orrery.runtime.reactions import claimed, follow_up
from orrery.worktrees.adapters.files import Layout, copy_files, is_dir, read_settings, remove_tree
from orrery.worktrees.adapters.git import Git, GitError, Worktree
from orrery.worktrees.domain.environment import RecordGitState
from orrery.worktrees.domain.registry import (
    AGGREGATE_ID,
    REGISTRY,
    CompleteArchive,
    CompleteDelete,
    CompleteRepoAdd,
    CompleteWorktreeCreation,
    FailRepoAdd,
    FailWorktreeCreation,
    ImportRepoConfig,
    RepoState,
)
from orrery.worktrees.domain.registry import Registry as RegistryState
from orrery.worktrees.environments import EnvironmentManager
from orrery.worktrees.reconciler import Reconciler

log = logging.getLogger(__name__)

LOCK_KEY = "orrery.worktrees.reactor"
_RETRYABLE: tuple[type[BaseException], ...] = (RuntimeFailure, *NATS_UNAVAILABLE, OSError)
IN_PROGRESS_EVERY_S = 20.0


@dataclass
class Reactor:
    js: JetStreamContext
    pool: asyncpg.Pool
    bus: CommandBus
    registry: Registry
    git: Git
    layout: Layout
    envs: EnvironmentManager
    reconciler: Reconciler
    token: str | None = None  # GITHUB_TOKEN for private https repos; never in an event
    state: str = "starting"
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        async with claimed(self.pool, LOCK_KEY, stop, self._standby) as held:
            if not held:
                return
            try:
                await self._run(stop)
            finally:
                await self._drain()
                await self.envs.close()

    def _standby(self) -> None:
        self.state = "standby"

    async def _run(self, stop: asyncio.Event) -> None:
        self.state = "recovering"
        registry = await self.bus.current(REGISTRY, AGGREGATE_ID)
        await self.envs.recover(
            [
                w.worktree_id
                for w in registry.worktrees.values()
                if w.status in ("active", "archiving", "deleting")
            ]
        )
        sub = await self.js.pull_subscribe_bind(
            durable=topology.reactor_consumer_name("worktrees"),
            stream=subjects.event_stream("worktrees"),
        )
        self.state = "running"
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.envs.publish_output(stop))
            tg.create_task(self.reconciler.run_periodically(stop))
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(64, timeout=1.0)
                except TimeoutError:
                    continue
                except NATS_UNAVAILABLE as exc:
                    log.warning("reactor fetch failed, retrying: %r", exc)
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    self._dispatch(msg)

    def _dispatch(self, msg: Msg) -> None:
        try:
            envelope = decode_msg(self.registry, msg)
        except EventsError as exc:
            log.error("reactor cannot decode %s: %r", msg.subject, exc)
            task = asyncio.create_task(msg.ack())
        else:
            reaction = self._reaction(envelope)
            if reaction is None:
                task = asyncio.create_task(msg.ack())
            else:
                key, work = reaction
                task = asyncio.create_task(self._react(msg, envelope, key, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)

    async def _react(
        self,
        msg: Msg,
        envelope: Envelope[Event],
        key: str,
        work: Callable[[Envelope[Event]], Awaitable[None]],
    ) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            beat = asyncio.create_task(_keep_in_progress(msg))
            try:
                await work(envelope)
            except _RETRYABLE as exc:
                log.warning("reaction to %s failed, will retry: %r", envelope.type, exc)
                with contextlib.suppress(*NATS_UNAVAILABLE):
                    await msg.nak(delay=2.0)
                return
            except Exception:
                log.exception("reaction to %s raised; it will be offered again", envelope.type)
                with contextlib.suppress(*NATS_UNAVAILABLE):
                    await msg.nak(delay=5.0)
                return
            finally:
                beat.cancel()
            with contextlib.suppress(*NATS_UNAVAILABLE):
                await msg.ack()

    def _reaction(
        self, envelope: Envelope[Event]
    ) -> tuple[str, Callable[[Envelope[Event]], Awaitable[None]]] | None:
        """Which work an event asks for, keyed by what it must be ordered with."""
        route = _ROUTES.get(type(envelope.event))
        if route is None:
            return None
        prefix, attribute, method = route
        key = f"{prefix}:{getattr(envelope.event, attribute, None) or ''}"
        return key, getattr(self, method)

    async def _record(self, trigger: Envelope[Event], command: Command) -> None:
        await self.bus.run(command, follow_up(trigger))

    async def _registry(self) -> RegistryState:
        return await self.bus.current(REGISTRY, AGGREGATE_ID)

    # -- repos ---------------------------------------------------------------------------------

    async def _add_repo(self, env: Envelope[Event]) -> None:
        event = env.event
        assert isinstance(event, RepoAddRequested)
        cid = f"{env.event_id}:outcome"
        repo = (await self._registry()).repos.get(event.repo_id)
        if repo is None or repo.status != "adding":
            return  # handled before (a replayed or redelivered request): never clone again
        try:
            if event.adopt:
                info = await self.git.adopt(event.source)
            else:
                dest = self.layout.repo_path(event.slug)
                info = await self._clone(event.source, dest)
        except GitError as exc:
            await self._record(
                env,
                FailRepoAdd(
                    command_id=cid, repo_id=event.repo_id, code=exc.code, message=exc.message
                ),
            )
            return
        settings = await read_settings(Path(info.path))
        await self._record(
            env,
            CompleteRepoAdd(
                command_id=cid,
                repo_id=event.repo_id,
                path=info.path,
                default_branch=info.default_branch,
                remote_url=info.origin_url,
                settings=settings,
            ),
        )

    async def _clone(self, source: str, dest: Path):  # type: ignore[no-untyped-def]
        if await is_dir(dest / ".git"):
            # A clone a previous attempt finished before it could record the outcome.
            info = await self.git.adopt(dest)
            if info.origin_url in (source, _as_url(source)):
                return info
            raise GitError("git.destination_exists", f"{dest} holds another repository")
        return await self.git.clone(source, dest, token=self.token)

    async def _reload_config(self, env: Envelope[Event]) -> None:
        event = env.event
        assert isinstance(event, RepoConfigReloadRequested)
        repo = (await self._registry()).repos.get(event.repo_id)
        if repo is None or repo.status != "ready":
            return
        settings = await read_settings(Path(repo.path))
        if not await is_dir(repo.path):
            settings = RepoSettings(error=f"{repo.path} is missing on disk")
        await self._record(
            env,
            ImportRepoConfig(
                command_id=f"{env.event_id}:outcome", repo_id=event.repo_id, settings=settings
            ),
        )

    async def _remove_repo(self, env: Envelope[Event]) -> None:
        event = env.event
        assert isinstance(event, RepoRemoved)
        if not (event.delete_files and event.path and self.layout.is_managed_clone(event.path)):
            return
        registry = await self._registry()
        if any(
            r.path == event.path and r.status in ("adding", "ready")
            for r in registry.repos.values()
        ):
            return  # a repo added later lives there now (a replayed removal must not touch it)
        await remove_tree(Path(event.path))

    # -- worktrees -----------------------------------------------------------------------------

    async def _create_worktree(self, env: Envelope[Event]) -> None:
        event = env.event
        assert isinstance(event, WorktreeRequested)
        cid = f"{env.event_id}:outcome"
        # A repo's path, branch and settings change only through this reactor's own records, so
        # its cached registry is current for them (and saves a load on the hot path).
        cached = self.bus.cached(REGISTRY, AGGREGATE_ID)
        repo = cached.repos.get(event.repo_id) if cached is not None else None
        wt = cached.worktrees.get(event.worktree_id) if cached is not None else None
        if repo is None or repo.status != "ready" or wt is None:
            fresh = await self._registry()
            repo, wt = fresh.repos.get(event.repo_id), fresh.worktrees.get(event.worktree_id)
        if wt is not None and wt.status != "creating":
            return  # handled before: a replayed or redelivered request
        if repo is None or repo.status != "ready":
            await self._record(
                env,
                FailWorktreeCreation(
                    command_id=cid,
                    worktree_id=event.worktree_id,
                    code="repo.not_found",
                    message=f"repo {event.repo_id} is not available",
                ),
            )
            return
        path = self.layout.worktree_path(repo.slug, event.name)
        try:
            worktree = await self._add_worktree(repo, path, event)
            copied = await copy_files(Path(repo.path), path, repo.settings.copy)
        except GitError as exc:
            await self._record(
                env,
                FailWorktreeCreation(
                    command_id=cid,
                    worktree_id=event.worktree_id,
                    code=exc.code,
                    message=exc.message,
                ),
            )
            return
        await self._record(
            env,
            CompleteWorktreeCreation(
                command_id=cid,
                worktree_id=event.worktree_id,
                path=str(path),
                head_sha=worktree.head,
                base_ref=(event.base or repo.default_branch) if event.new_branch else None,
                environment=repo.settings.environment,
                copied=copied,
            ),
        )

    async def _add_worktree(
        self, repo: RepoState, path: Path, event: WorktreeRequested
    ) -> Worktree:
        if await is_dir(path):
            # Done by an earlier attempt that died before recording it?
            for existing in await self.git.list_worktrees(repo.path):
                if Path(existing.path) == path and existing.branch == event.branch:
                    return existing
        return await self.git.add_worktree(
            repo.path,
            path,
            branch=event.branch,
            base=event.base,
            new_branch=event.new_branch,
            token=self.token,
            origin=repo.remote_url is not None,
            default_branch=repo.default_branch,
        )

    async def _archive(self, env: Envelope[Event]) -> None:
        event = env.event
        assert isinstance(event, WorktreeArchiveRequested)
        registry = await self._registry()
        wt = registry.worktrees[event.worktree_id]
        if wt.status != "archiving":
            return  # handled before: cleaning again could delete files made since
        repo = registry.repos[wt.repo_id]
        await self.envs.stop_for(env, wt.worktree_id)
        removed = 0
        exists = await is_dir(wt.path)
        if event.filesystem == "cleaned" and exists:
            removed = await self.git.clean(wt.path)
        elif event.filesystem == "deleted":
            await self.git.remove_worktree(repo.path, wt.path)
        await self._record(
            env,
            CompleteArchive(
                command_id=f"{env.event_id}:outcome",
                worktree_id=wt.worktree_id,
                files_removed=removed,
            ),
        )

    async def _delete(self, env: Envelope[Event]) -> None:
        event = env.event
        assert isinstance(event, WorktreeDeleteRequested)
        registry = await self._registry()
        wt = registry.worktrees[event.worktree_id]
        if wt.status != "deleting":
            return  # handled before
        repo = registry.repos[wt.repo_id]
        await self.envs.stop_for(env, wt.worktree_id)
        was_missing = not await is_dir(wt.path)
        if event.delete_files and await is_dir(repo.path):
            # Already gone by hand: git prunes its registration and that is a success.
            await self.git.remove_worktree(repo.path, wt.path)
        await self._record(
            env,
            CompleteDelete(
                command_id=f"{env.event_id}:outcome",
                worktree_id=wt.worktree_id,
                files_deleted=event.delete_files,
                was_missing=was_missing,
            ),
        )

    # -- environments and git state ------------------------------------------------------------

    async def _already_handled(self, env: Envelope[Event], kind: str, wid: str) -> bool:
        """Something after the request on its subject means a previous attempt handled it."""
        subject = subjects.event_subject("worktrees", kind, wid)
        return await self.bus.store.last_sequence(subject) > env.sequence

    async def _start_env(self, env: Envelope[Event]) -> None:
        event = env.event
        assert isinstance(event, EnvironmentStartRequested)
        if await self._already_handled(env, "env", event.worktree_id):
            return
        await self.envs.start(env, event.worktree_id, restart=event.restart)

    async def _stop_env(self, env: Envelope[Event]) -> None:
        event = env.event
        assert isinstance(event, EnvironmentStopRequested)
        if await self._already_handled(env, "env", event.worktree_id):
            return
        await self.envs.stop(env, event.worktree_id)

    async def _fetch_logs(self, env: Envelope[Event]) -> None:
        event = env.event
        assert isinstance(event, EnvironmentLogsRequested)
        # Read-only: running it again after a crash is harmless; the record happens once.
        await self.envs.fetch_logs(env, event.worktree_id)

    async def _git_state(self, env: Envelope[Event]) -> None:
        event = env.event
        assert isinstance(event, GitStateRequested)
        registry = await self._registry()
        wt = registry.worktrees.get(event.worktree_id)
        branch = sha = error = None
        dirty = False
        if wt is None or not wt.path:
            error = f"no worktree {event.worktree_id}"
        else:
            try:
                state = await self.git.state(wt.path)
                branch, sha, dirty = state.branch, state.head, state.dirty
            except GitError as exc:
                error = exc.message
        await self._record(
            env,
            RecordGitState(
                command_id=f"{env.event_id}:outcome",
                worktree_id=event.worktree_id,
                branch=branch,
                sha=sha,
                dirty=dirty,
                purpose=event.purpose,
                error=error,
            ),
        )

    async def _reconcile(self, env: Envelope[Event]) -> None:
        event = env.event
        assert isinstance(event, ReconcileRequested)
        await self.reconciler.run_once(event.repo_id, follow_up(env))


_ROUTES: dict[type[Event], tuple[str, str, str]] = {
    RepoAddRequested: ("repo", "repo_id", "_add_repo"),
    RepoConfigReloadRequested: ("repo", "repo_id", "_reload_config"),
    RepoRemoved: ("repo", "repo_id", "_remove_repo"),
    WorktreeRequested: ("wt", "worktree_id", "_create_worktree"),
    WorktreeArchiveRequested: ("wt", "worktree_id", "_archive"),
    WorktreeDeleteRequested: ("wt", "worktree_id", "_delete"),
    EnvironmentStartRequested: ("wt", "worktree_id", "_start_env"),
    EnvironmentLogsRequested: ("logs", "worktree_id", "_fetch_logs"),
    EnvironmentStopRequested: ("wt", "worktree_id", "_stop_env"),
    GitStateRequested: ("git", "worktree_id", "_git_state"),
    ReconcileRequested: ("reconcile", "repo_id", "_reconcile"),
}


async def _keep_in_progress(msg: Msg) -> None:
    """Long work (a big clone) must not be redelivered to a second worker meanwhile."""
    while True:
        await asyncio.sleep(IN_PROGRESS_EVERY_S)
        with contextlib.suppress(*NATS_UNAVAILABLE):
            await msg.in_progress()


def _as_url(source: str) -> str:
    return source if "://" in source else os.path.abspath(source)
