"""Git is reconciled, not duplicated: compare the log's worktrees with ``git worktree list`` and
the filesystem, and record drift as events (missing on disk, back on disk, worktrees made
outside Orrery). Only changes are recorded, so running it often costs no events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path

from orrery.events import EventMeta
from orrery.events.worktrees import ExternalWorktree
from orrery.runtime.clock import UUID7
from orrery.runtime.commands.handling import CommandBus
from orrery.worktrees.adapters.files import Layout, is_dir
from orrery.worktrees.adapters.git import Git, GitError
from orrery.worktrees.domain.registry import (
    AGGREGATE_ID,
    HOLDS_NAME,
    REGISTRY,
    RecordDrift,
    RecordExternal,
    RepoState,
)

log = logging.getLogger(__name__)


def _resolved(path: str) -> str:
    return str(Path(path).resolve())


class Reconciler:
    def __init__(self, bus: CommandBus, git: Git, layout: Layout, *, interval_s: float) -> None:
        self._bus = bus
        self._git = git
        self._layout = layout
        self.interval_s = interval_s
        self._ids = UUID7()
        self._lock = asyncio.Lock()
        self.runs = 0

    async def run_periodically(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once(None, None)
            except Exception:
                log.exception("reconciliation failed; trying again in %ss", self.interval_s)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await stop.wait()

    async def run_once(self, repo_id: str | None, meta: EventMeta | None) -> None:
        async with self._lock:
            registry = await self._bus.current(REGISTRY, AGGREGATE_ID)
            for repo in registry.repos.values():
                if repo.status != "ready" or (repo_id is not None and repo.repo_id != repo_id):
                    continue
                await self._repo(repo, meta)
            self.runs += 1

    async def _repo(self, repo: RepoState, meta: EventMeta | None) -> None:
        meta = meta or EventMeta(occurred_at=datetime.now(UTC), actor="system")
        if not await is_dir(repo.path):
            log.warning("repo %s: %s is missing on disk", repo.slug, repo.path)
            return
        try:
            listed = await self._git.list_worktrees(repo.path)
        except GitError as exc:
            log.warning("repo %s: %s", repo.slug, exc.message)
            return
        registry = await self._bus.current(REGISTRY, AGGREGATE_ID)
        mine = [w for w in registry.worktrees.values() if w.repo_id == repo.repo_id]
        known = {
            _resolved(w.path or str(self._layout.worktree_path(repo.slug, w.name)))
            for w in mine
            if w.status in HOLDS_NAME
        }
        on_disk = {_resolved(w.path): w for w in listed[1:] if await is_dir(w.path)}
        for wt in mine:
            if wt.status not in ("active", "archived") or not wt.path:
                continue
            if wt.status == "archived" and wt.filesystem == "deleted":
                continue
            missing = _resolved(wt.path) not in on_disk
            if missing != wt.missing:
                await self._bus.run(
                    RecordDrift(
                        command_id=self._ids.new(), worktree_id=wt.worktree_id, missing=missing
                    ),
                    meta,
                )
        external = [
            ExternalWorktree(path=path, branch=w.branch, head=w.head)
            for path, w in sorted(on_disk.items())
            if path not in known
        ]
        await self._bus.run(
            RecordExternal(command_id=self._ids.new(), repo_id=repo.repo_id, worktrees=external),
            meta,
        )
